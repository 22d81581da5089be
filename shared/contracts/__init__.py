"""Event contracts and the clinical-notes schema."""

from shared.contracts.events import *  # noqa: F401,F403
from shared.contracts.notes import *  # noqa: F401,F403
