/* Placeholder for the notes-review module (window.TBReview.mount(container, sessionId, api)),
 * which its own change provides; this stub renders nothing. */
"use strict";

