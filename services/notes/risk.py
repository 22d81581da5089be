"""Always-on risk safety net: lexicon and regex patterns over the client's speech.

Why: an LLM can miss or soften a disclosure of suicidal thoughts, and the offline backend
has no model at all. This deterministic detector runs beside every notes backend and its
flags are merged in (``merge_flags``) so that a lexicon flag is never lost.

Design choices:
- Patterns are anchored to the speaker's own experience ("kill myself", "he hits me",
  "I've been using coke") rather than bare keywords, which keeps idioms ("my feet are
  killing me", "I could murder a pizza") and third-party talk ("my friend's brother killed
  himself") out without a long exclusion list.
- A few bare keywords ("suicidal", "self-harm") are marked *generic*: they flag only
  when the clause is first-person and the sentence is not about education or media.
- Negation is checked inside the clause, before the match ("I would never kill myself"),
  plus a short look-ahead ("Suicide isn't something I'd consider"). Patterns that carry
  their own negation ("I don't want to be alive") are not negatable.
- Hypotheticals ("if I ever felt like hurting myself I'd call...", "what should someone
  do if...") are suppressed; real conditional intent ("if things don't get better I'm
  going to end my life") is not a hypothetical and still flags.
- Past, resolved events ("I used to cut myself years ago but haven't since") flag with
  LOW severity and a "historical" rationale: clinically relevant history, not missed.

Only speech that is not the therapist's is scanned (the client's, or everyone's when roles
are unknown), because therapists routinely say "have you had thoughts of killing yourself".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shared.contracts.events import MergedSegment
from shared.contracts.notes import RiskCategory, RiskEvidence, RiskFlag, Severity, sort_flags
from services.notes.grounding import Sentence, normalize, segment_sentences
from services.notes.risk_episodes import OPENING_KINDS, PAST_GAP_S, Mention, absorb, as_episode, episodes_to_flags, same_episode
from services.notes.risk_rules import calibrate_episode, promote_convergent_plan, promote_weak, route_mention, weak_labels
from shared.logging import get_logger

if TYPE_CHECKING:
    from services.notes.risk_classifier import RiskClassifier, TurnPrediction
    from services.notes.risk_semantic import SemanticConfig, SemanticRiskModel

log = get_logger(__name__)

_SEV_RANK = {Severity.low: 0, Severity.moderate: 1, Severity.high: 2}

# --- vocabulary ------------------------------------------------------------------------
_I = r"(?:i|i'm|i've|i'd|i'll|i am|i was|i have|i had)"
_FAMILY = (
    r"(?:husband|wife|partner|boyfriend|girlfriend|fianc[eé]e?|ex|dad|father|mum|mom|mother|"
    r"stepdad|stepfather|stepmother|stepmum|stepmom|uncle|aunt|brother|sister|grand(?:father|dad|pa)|"
    r"cousin|boss|manager|teacher|coach|son|daughter|kids?|child|children|baby|neighbou?r|"
    r"colleague|co-?worker|flatmate|roommate|landlord)"
)
_PERSON = (
    rf"(?:him|her|them|someone|somebody|anyone|anybody|everyone|people|the baby|the kids|"
    rf"(?:a|some|this|that) (?:lad|bloke|guy|fella|fellow|man|woman|stranger|kid)|"
    rf"(?:my|his|her|their) {_FAMILY}|the (?:guy|man|woman|person|one|people|kid)|that (?:guy|man|woman|bastard|bitch|prick))"
)
_DRUGS = (
    r"(?:cocaine|coke|crack|heroin|smack|meth|crystal|methamphetamine|ketamine|mdma|molly|ecstasy|"
    r"weed|cannabis|marijuana|pot|xanax|valium|diazepam|benzos?|oxy|oxycodone|oxycontin|fentanyl|"
    r"opioids?|opiates?|speed|amphetamines?|drugs|acid|lsd|spice|pills)"
)
_ALCOHOL = r"(?:wine|beers?|vodka|whisk(?:e)?y|gin|rum|cider|spirits|booze|alcohol|lager|tequila|shots|pints|drinks?)"
_NUM = r"(?:\d+|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty)"
_ABUSE_VERBS = (
    r"(?:hits?|hit|hitting|beat|beats|beating|slapped|slaps|slapping|punched|punches|punching|kicked|kicks|"
    r"choked|chokes|choking|strangled|strangles|pushed|pushes|shoved|shoves|throws?|threw|burned|burnt|raped|"
    r"rapes|molested|touched|touches|hurt|hurts|hurting|locks?|locked|lock|grabbed|grabs|attacked|attacks|"
    r"abused|abuses|abusing|bit|bites|dragged|drags|spat|spits|knock|knocks|knocked|knocking)"
)
_HARM_VERBS = (
    r"(?:kill|killing|killed|murder|murdering|stab|stabbing|stabbed|strangle|strangling|strangled|choke|choking|"
    r"hurt|hurting|harm|harming|shoot|shooting|shot|beat|beating|hit|hitting|punch|punching|punched|attack|"
    r"attacking|smash|smashing|shove|shoved|push|pushed|run over|chop|chopping|chopped|slash|slashing|slashed|"
    # Everyday words for an assault (British, Irish, Australian, American): "I want to flatten
    # them", "I glassed a lad", "I decked him". Each needs a person after it, so "flatten the
    # box" or "deck the halls" never match.
    r"flatten|flattening|flattened|deck|decking|decked|thump|thumping|thumped|smack|smacking|smacked|"
    r"batter|battering|battered|bash|bashing|bashed|clobber|clobbered|headbutt|headbutted|glass|glassed|"
    r"swing at|swung at|swinging at|lay into|laid into|go for|went for|king-hit|king hit|king-hitting|sucker-punched|sucker punched)"
)


@dataclass(frozen=True)
class Pattern:
    category: RiskCategory
    regex: re.Pattern[str]
    severity: Severity
    label: str
    negatable: bool = True
    generic: bool = False  # bare keyword: needs a first-person clause and no education/media cue
    historical_ok: bool = True  # may be downgraded to a historical (low) flag
    third_party_ok: bool = False  # someone else is the subject by design ("they tell me to hurt myself")
    multi_client_only: bool = False  # "you" is another client (couple/family), not the therapist


def _p(cat: RiskCategory, rx: str, sev: Severity, label: str, **kw) -> Pattern:
    return Pattern(cat, re.compile(rx, re.IGNORECASE), sev, label, **kw)


SI, SH, HO, AV, SU, HP, OT = (
    RiskCategory.suicidal_ideation, RiskCategory.self_harm, RiskCategory.harm_to_others,
    RiskCategory.abuse_or_violence, RiskCategory.substance_use, RiskCategory.hopelessness, RiskCategory.other,
)
HI, MO, LO = Severity.high, Severity.moderate, Severity.low

PATTERNS: tuple[Pattern, ...] = (
    # --- suicidal ideation: explicit / active -> high, passive -> moderate
    _p(SI, r"\bkill(?:ing)? myself\b", HI, "active ideation"),
    _p(SI, r"\b(?:end|ending|take|taking|took) (?:my|my own) life\b", HI, "active ideation"),
    _p(SI, r"\bend(?:ing)? it all\b", HI, "active ideation"),
    _p(SI, r"\b(?:end|ending) (?:things|it)\b(?! with| off)(?=.*\b(?:this|next|tonight|tomorrow|weekend|soon|when|while)\b)", HI, "intent"),
    _p(SI, r"\b(?:tried|try|trying|attempted|attempt) to (?:kill myself|take my (?:own )?life|end my life|end it)\b", HI, "attempt"),
    _p(SI, r"\b(?:attempted suicide|suicide attempt|tried suicide)\b", HI, "attempt"),
    _p(SI, r"\bsuicid(?:e|al)\b", HI, "suicidal ideation", generic=True),
    _p(SI, r"\b(?:want|wanted|wants|wanting|wish|wished|hope|hoping)(?: to)? (?:just )?(?:to )?die\b", HI, "wish to die"),
    _p(SI, r"\b(?:want|wanted|wish) (?:to be|i was|i were) dead\b", HI, "wish to be dead"),
    _p(SI, r"\brather (?:be dead|die|not be here|not exist)\b", MO, "passive ideation"),
    _p(SI, r"\b(?:feel like|want to|wanna|should just|might just|going to|gonna|thinking about|thought about|think about|thinking of) (?:just )?end(?:ing)? (?:it|things|everything)\b(?! with| off| between| there| early)", HI, "active ideation"),
    _p(SI, r"\b(?:no|any|the) point (?:in )?(?:going on|living|carrying on|being here|being alive|staying alive|existing|waking up)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\bwish (?:i'd|i had) never been born\b|\bwish i could (?:just )?disappear\b(?! (?:under|for a|to|into|on|from))", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:thought|thinking|think|thinks) (?:a lot )?about (?:dying|being dead|not being here|not waking up)\b", MO, "passive ideation"),
    _p(SI, r"\b(?:took|taken|swallowed|had) (?:\w+ ){0,3}(?:pills|tablets|paracetamol|painkillers)\b[^.]*\bon purpose\b|\bon purpose\b[^.]*\b(?:pills|tablets|overdose)\b", HI, "possible attempt"),
    _p(SI, r"\bbetter off (?:without me|if i (?:was|were)n't (?:here|around)|dead)\b", MO, "passive ideation / burdensomeness", negatable=False),
    _p(SI, r"\beasier (?:for (?:everyone|everybody|them|you|my \w+) )?if i (?:just )?(?:wasn't|weren't|was not|were not) (?:here|around|alive)\b", MO, "passive ideation", negatable=False),
    # "(She) just went to sleep and didn't wake up": how someone died, not a wish.
    _p(SI, r"(?<!went to sleep and )(?<!fell asleep and )\b(?:not|never|don't|didn't) wake up\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:don't|do not|didn't) want to (?:be alive|exist|wake up)\b|\b(?:don't|do not|didn't) want to (?:live|be here|be around|go on|keep going|keep living)\b(?! (?:at|in|with|for|on|today) )", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:not sure|don't know if|don't know whether|not certain) i (?:want|wanna) to (?:live|be alive|be here|go on|keep living|keep going)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\bthought of not (?:being|existing)(?: here| alive| around)?\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:don't|do not|can't) see myself (?:being )?(?:around|here|alive) (?:much )?(?:longer|anymore|for long)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\bdisappear (?:forever|permanently|for good)\b", MO, "passive ideation"),
    _p(SI, r"\b(?:think|thinking|thought|considered|considering|imagine|imagining) (?:about )?(?:jumping|overdosing|hanging myself|drowning myself|an overdose|taking an overdose|taking all my)\b", HI, "method ideation"),
    _p(SI, r"\b(?:swerv(?:e|ing|ed)|drive|driving|drove|crash(?:ing|ed)?|steer(?:ing|ed)?) (?:(?:my|the|our) (?:car|truck|van) )?(?:into|off) (?:a |the |an )?(?:tree|wall|bridge|traffic|lorry|truck|cliff|road|river|lake|sea|canal|quarry|reservoir|embankment|oncoming \w+)\b", HI, "method ideation"),
    _p(SI, r"\b(?:step|stepping|jump|jumping) in front of (?:a |the )?(?:train|bus|car|lorry|truck)\b", HI, "method ideation"),
    _p(SI, r"\bhow many (?:of (?:my|these|the) )?(?:pills|tablets|paracetamol)\b(?=[^.]*\b(?:die|dying|kill|overdose|enough|fatal|lethal|all of them|would take|it'd take|would it take)\b)", HI, "means research"),
    _p(SI, r"\b(?:take|took|taking|swallow|swallowing) (?:the|a) whole (?:bottle|packet|box|lot)\b", HI, "method ideation"),
    _p(SI, r"\b(?:saving|saved|stockpiling|stockpiled|hoarding|hoarded|collecting) (?:up )?(?:all )?(?:my |some )?(?:sleeping )?(?:pills|tablets|meds|medication|painkillers)\b", HI, "stockpiling means"),
    _p(SI, r"\b(?:bought|got|buy|have|keep) (?:a|some) (?:rope|noose)\b", HI, "means acquired"),
    _p(SI, r"\b(?:use|using|used|turn|turning) (?:it|them|the gun|a gun|the rope|the pills) on myself\b", HI, "means"),
    _p(SI, r"\b(?:know|planning|planned|worked out|working out|figured out|decided) (?:where|how|when|exactly how) i(?:'d| would|'ll| will| could) do it\b", HI, "plan"),
    _p(SI, r"\b(?:plan|plans|planned|planning) (?:to|for|how to) (?:kill myself|end (?:it|my life|things)|die)\b", HI, "plan"),
    _p(SI, r"\b(?:goodbye|suicide) (?:letter|note|message)s?\b", HI, "preparatory behaviour"),
    _p(SI, r"\b(?:giving|give|gave|given) (?:away )?(?:all )?(?:my|some of my) (?:things|stuff|belongings|possessions)(?: away)?\b(?=.*\b(?:won't need|not need|won't be|after i'm gone|when i'm gone)\b)", HI, "preparatory behaviour"),
    _p(SI, r"\b(?:don't|do not) care if i (?:die|live|don't wake up)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:googl\w*|search\w*|look\w* up|looked up|read\w* up on|research\w*) (?:for )?(?:ways|how|methods) to (?:die|kill myself|end it|end my life|overdose)\b|\bways to (?:die|kill myself|end it all|end my life)\b", HI, "means research"),
    _p(SI, r"\b(?:won't|will not|don't think i'll|do not think i will|not going to|might not) be (?:here|around|alive) (?:next|by|for|much|long|at|in|this time)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\bhandful of (?:pills|tablets|paracetamol)\b|\b(?:took|taken|had) an overdose\b|\bi(?:'ve| have)? overdosed\b", HI, "possible attempt"),
    _p(SI, r"\b(?:happier|better|easier|fine)(?: off)? (?:if|when) i(?:'m| am| was| were)? (?:gone|dead|not here|not around|no longer here)\b", MO, "passive ideation / burdensomeness", negatable=False),
    _p(SI, r"\b(?:tired|sick|weary) of (?:living|being alive|life|existing)\b|\blife (?:isn't|is not|isn't really|is no longer) worth (?:living|it)\b|\bnot worth living\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:they|the voices?|it|he|she)(?: keep)? (?:say|says|said|tell|tells|told|telling|keeps? telling|keeps? saying)(?: me)?(?: (?:that )?i should| to| i ought to| i have to)? (?:go to the (?:bridge|tracks|railway|roof|edge)|jump|die|kill myself|end it|hang myself|step in front)\b", HI, "command hallucinations: suicide", third_party_ok=True, negatable=False),
    # Means research in any voice ("she'd been looking up how many of the tablets it would take"),
    # a wish not to exist, and rehearsal with a firearm.
    _p(SI, r"\bhow (?:many|much)\b[^.]{0,50}\b(?:it would|it'd|would it|it will|it'll|does it|would) (?:take|kill|be enough)\b(?=[^.]*\b(?:die|dying|kill|overdose|enough|fatal|lethal)\b)|\bhow (?:many|much)\b[^.]{0,40}\bto (?:die|kill (?:me|myself|her|him))\b", HI, "means research"),
    _p(SI, r"\b(?:hang|hanging|hanged|drown|drowning|drowned|gas|gassing|poison|poisoning|poisoned|suffocate|suffocating|electrocute|shoot|shooting|shot|stab|stabbing|stabbed|starve|starving) myself\b(?! in the foot)", HI, "method ideation"),
    _p(SI, r"\b(?:isn't|is not|doesn't feel|does not feel|don't feel|no longer feels?|not) (?:\w+ )?worth (?:living|going on|being alive|staying alive|carrying on)\b|\b(?:letters?|notes?)\b[^.]{0,30}\bfor (?:after|when i'm gone|when i'm not here)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\bnot want(?:ing)? to (?:be alive|live|be here|exist|wake up|be around)\b|\b(?:want|wanted|wants|wish|wished|rather|prefer|just want) (?:to )?(?:just )?not (?:be here|be around|be alive|exist|wake up|be anywhere)\b", MO, "passive ideation", negatable=False),
    _p(SI, r"\b(?:everyone|everybody|they|the kids|my family|people|the world)(?:'d| would| will|'ll)? (?:all )?(?:be )?better off (?:without me|if i (?:just )?(?:was|were|wasn't|weren't|'m not|am not) (?:gone|dead|here|around))\b", MO, "passive ideation / burdensomeness", negatable=False),
    _p(SI, r"\b(?:check\w*|make sure|made sure) (?:it's|it is|it was|that it's|if it's|whether it's) loaded\b|\b(?:sit|sat|sitting) (?:there )?(?:and )?(?:hold|holding|with) (?:it|the gun|the pills|the rope|the blade)\b(?=[^.]*\b(?:night|alone|asleep|again)\b)", HI, "rehearsal with means"),
    # --- self-harm
    _p(SH, r"\bcut(?:ting)? myself\b(?! (?:some |a bit of |any )?slack| off| short| out)", MO, "cutting"),
    _p(SH, r"\b(?:started|start|keep|kept|been|i'm|i was|stop|stopped|urges? to|urge to|cutting) cutting\b|\bcutting again\b|\bi(?:'ve| have) been cutting\b|\bbeen cutting\b", MO, "cutting"),
    _p(SH, r"\burges? to (?:cut|hurt myself|harm myself|self[- ]?harm|burn myself)\b", MO, "self-harm urges"),
    _p(SH, r"\b(?:cut|cutting) (?:into )?my (?:arms?|wrists?|thighs?|forearms?|stomach|hips?)\b(?! (?:on|with|while|shaving|by|open on))", MO, "cutting"),
    _p(SH, r"\bself[- ]?harm(?:ing|ed|s)?\b|\bself[- ]?injur(?:y|ing|ed)\b", MO, "self-harm", generic=True),
    _p(SH, r"\b(?:hurt|hurting|harm|harming|injure|injuring|injured|punish|punishing|punished) myself\b", MO, "self-harm"),
    _p(SH, r"\bburn(?:ing|ed|t|s)? (?:myself|my (?:arm|arms|skin|hand|hands|leg|legs|wrist|wrists|thigh|thighs|stomach))\b", MO, "burning"),
    _p(SH, r"\b(?:scratch|scratched|scratching|scraped|scraping) (?:my|myself)\b[^.]*\b(?:bleed|bled|bleeding|blood|raw)\b", MO, "scratching"),
    _p(SH, r"\b(?:hit|hitting|punch|punching|slap|slapping) myself\b", MO, "self-hitting"),
    _p(SH, r"\b(?:bang|banged|banging|hit|hitting) my head (?:against|on|off)\b", MO, "head banging"),
    _p(SH, r"\bpunch(?:ed|ing)? (?:the )?walls?\b[^.]*\b(?:bleed|bled|bleeding|blood|broke|broken)\b", MO, "self-injury"),
    _p(SH, r"\b(?:razor|blade|knife|scissors|lighter)\b[^.]*\b(?:on|into|across|to) my (?:arms?|thighs?|wrists?|legs?|skin|stomach)\b", MO, "cutting"),
    _p(SH, r"\bpick(?:ing|ed)? at (?:the |my )?(?:scars|wounds|cuts)\b", MO, "wound reopening"),
    _p(SH, r"\b(?:fresh |new )?(?:cuts|burns|scratches|slashes)\b (?:all )?(?:on|across|up|down) (?:her|his|their|my) (?:arms?|wrists?|thighs?|legs?|stomach|forearms?)\b", MO, "self-harm injuries"),
    _p(SH, r"\bmarks from (?:where )?i(?:'ve| have)? (?:been )?(?:cutting|cut|burning)\b", MO, "cutting"),
    _p(SH, r"\b(?:bit|bite|biting|bitten) (?:my|myself on the) ?(?:arm|arms|hand|hands|wrist|wrists|skin|lip|lips|fingers?)\b[^.]*\b(?:bruise|bleed|bled|blood|hard|marks?)\b", MO, "self-injury"),
    # --- harm to others (the client as the one who might harm)
    _p(HO, r"\b(?:smash|smashing|punch|punching|kick|kicking|hit|hitting|bash|bashing|cave|caving) (?:his|her|their) (?:face|head|teeth|skull)(?: in)?\b", MO, "violent imagery"),
    _p(HO, rf"\bi(?:'ve)? (?:threatened|threaten|pulled a knife on|went for) (?:{_PERSON})(?: with (?:a |my )?(?:knife|gun|bat|weapon|hammer))?\b", HI, "threat"),
    _p(HO, rf"\b{_I}\b[^.;]{{0,45}}?\b(?:{_HARM_VERBS})\b (?:{_PERSON})\b", MO, "thoughts of harming others"),
    _p(HO, rf"\b(?:kill|murder|stab|shoot|strangle|hurt) (?:{_PERSON})\b(?=[^.]*\b(?:swear|mean it|meant it|if he|if she|if they|going to|gonna)\b)", HI, "threat"),
    _p(HO, rf"\b(?:run|running|ran) (?:{_PERSON}) over\b", MO, "violent imagery"),
    _p(HO, r"\bburn (?:his|her|their) (?:house|car|flat|place) down\b", HI, "threat"),
    _p(HO, r"\b(?:get|getting|buy|buying|got|bring|bringing) (?:a|my|the) (?:gun|knife|weapon|bat)\b(?=[^.]*\b(?:his|her|their|him|them)\b)", HI, "means to harm others"),
    _p(HO, r"\bmake (?:him|her|them) (?:pay|suffer|bleed)\b", MO, "revenge ideation"),
    # Slang threats ("I'm going to do him", "I'll batter him"), round 12: the object ends the
    # clause, so "I'll do her hair" and "going to do them" (homework) never match.
    _p(HO, r"\b(?:i'm going to|i am going to|i'm gonna|gonna|i'll|i will) (?:do (?:him|her)(?: in| over| some damage)?|(?:batter|deck|glass|shank|stripe) (?:him|her))(?=\s*(?:[.!;,]|$))", HI, "threat"),
    _p(HO, rf"\b{_I}\b[^.;]{{0,20}}?\b(?:go|going to go|gonna go) for (?:his|her|their) (?:face|throat|eyes|neck|head)\b", MO, "violent imagery"),
    _p(HO, r"\b(?:knife|blade|gun|bat|weapon|hammer)\b[^.]{0,40}\b(?:in case|for when|for if) (?:i see|i run into|he|she|they)\b", HI, "means to harm others"),
    _p(HO, rf"\burges? to (?:{_HARM_VERBS}) (?:{_PERSON})\b", MO, "urges to harm others"),
    _p(HO, r"\b(?:wipe|knock|smack|punch|slap|beat) (?:that|the) (?:\w+ )?(?:smirk|grin|look|smile) off (?:his|her|their) (?:\w+ )?face\b", MO, "violent imagery"),
    _p(HO, r"\bi (?:put|sent|landed) (?:a (?:guy|man|bloke|woman|lad)|someone|somebody|him|her|\w+) in (?:the )?hospital\b|\bi broke (?:his|her|a guy's|someone's) (?:jaw|nose|arm|ribs|cheekbone)\b|\b(?:i (?:got|was|have been|'ve been) )?(?:charged with|arrested for|convicted of|done for) (?:assault|gbh|abh|battery|attacking|wounding)\b", MO, "violence to others"),
    # --- abuse or violence experienced by the client
    _p(AV, rf"\b(?:he|she|they|(?:my|his|her) {_FAMILY})\b(?:'s| has| had| was| is| would| used to| keeps| kept| always| sometimes| never)*[^.;]{{0,25}}?\b{_ABUSE_VERBS}\b[^.;,]{{0,22}}?\b(?:me|us)\b", MO, "physical/sexual abuse"),
    _p(AV, r"\blaid (?:a )?hands? on me\b", MO, "physical abuse"),
    _p(AV, rf"\b(?:he|she|they|(?:my|his|her) {_FAMILY})\b(?:'s| has| had| was| is| would| used to| keeps| kept| always| sometimes)*[^.;]{{0,25}}?\b(?:hits?|hitting|beat|beats|beating|slapped|slaps|punched|punches|kicked|kicks|choked|chokes|strangled|burned|burnt|whips?|whipped|belts?|belted) (?:my|our) (?:little |baby |younger |big |older |youngest |eldest )?(?:brother|sister|son|daughter|kids?|children|mum|mom|mother|baby|boy|girl)\b(?! (?:at|in) (?:chess|cards|tennis|the race|football|games?))", MO, "abuse of a family member"),
    _p(AV, r"\b(?:put|puts|had|got|has) (?:your|his|her|their) hands? (?:on|round|around) (?:my (?:chest|neck|throat|arm|face)|me)\b", MO, "physical abuse"),
    _p(AV, r"\byou\b[^.;]{0,40}?\b(?:hit|slapped|punched|kicked|choked|strangled|shoved|pushed|grabbed|shook|dragged|spat at|bit|threw \w+ at) (?:me|us)\b(?! to\b)", MO, "physical abuse (partner in the room)", multi_client_only=True),
    _p(AV, r"\b(?:punch\w*|hit|hits|smash\w*|kick\w*|threw|throws?|throwing|slam\w*) (?:\w+ ){0,3}(?:right )?(?:next to|beside|by|near|past|at) my (?:head|face)\b", MO, "intimidation"),
    _p(AV, r"\b(?:takes?|took|taking|hides?|hid|hiding|keeps?|kept) (?:away )?my (?:keys|car keys|phone|passport|bank cards?|cards?|money|wallet)\b(?=[^.]*\b(?:so (?:that )?i (?:can't|couldn't|cannot|don't|won't)|stop me|so i'd|won't let)\b)", MO, "coercive control", negatable=False),
    # "walking with a cane" is a walking aid, not an implement.
    _p(AV, r"(?<!walking )(?<!walks )(?<!walked )(?<!walk )\b(?:with|gets?|got|took|take|takes|taking|using|used|uses|get) (?:the|a|his|her|my|their|dad's|mum's) (?:belt|strap|cane|wooden spoon|slipper|switch|cord|hairbrush)\b(?! (?:for(?! nothing| no reason| anything)|to hold|loop|buckle))", MO, "physical punishment with an implement"),
    _p(AV, r"\b(?:welts|bruises|bruising|lash marks|belt marks|red marks|marks|handprints?)\b[^.]{0,30}\b(?:on|across|down|all over) (?:the back of )?(?:his|her|their) (?:legs?|back|arms?|bottom|backside|face|body|neck|thighs?)\b", MO, "injuries from abuse"),
    _p(AV, r"\b(?:forces?|forced|made|makes|pressures?|pressured) me (?:to )?(?:have sex|into sex|do sexual|sleep with)\b", HI, "sexual violence"),
    _p(AV, r"\b(?:kill|hurt|hit|beat|find) me if i (?:go|leave|tell|call|report|ever leave)\b|\b(?:he|she|they)(?:'ll| will|'d| would) kill me\b(?=[^.]*\bif\b)", HI, "threat to client"),
    _p(AV, r"\b(?:i was|i've been|i have been|i got|got|been) (?:sexually |physically )?(?:assaulted|raped|abused|molested|attacked|beaten(?: up)?|mugged|jumped|groomed|stabbed|strangled)\b", MO, "victim of violence"),
    _p(AV, r"\bthreaten(?:ed|s|ing)? to (?:kill|hurt|hit|beat|take the kids from) me\b", HI, "threat to client"),
    _p(AV, r"\bif i (?:ever )?(?:leave|left|go|went|tell|told|call|called|report|take|took)\b[^.]{0,40}\b(?:he|she|they)(?:'ll| will|'d| would|'s going to| is going to)? (?:kill|hurt|find) me\b", HI, "threat to client"),
    _p(AV, r"\b(?:scared|afraid|worried|frightened|terrified) (?:that )?(?:he|she|they)(?:'ll| will|'d| would| might|'s going to| is going to) (?:hurt|hit|kill|take|harm) (?:me|us|the baby|the kids|my \w+)\b", HI, "fear of harm"),
    _p(AV, r"\b(?:afraid|scared|terrified|frightened) (?:to go home|of going home|of what (?:he|she|they)(?:'ll| will|'d| would| might) do)\b|\bbecause of what (?:he|she|they)(?:'ll| will|'d| would| might) do\b", HI, "fear of partner"),
    _p(AV, r"\b(?:he|she|they|my (?:husband|wife|partner|boyfriend|girlfriend|ex))(?:'s| is)? (?:won't|doesn't|does not|will not|wouldn't|didn't) let me (?:see|go|leave|have|talk|work|use|past|out|through|in|get past|near)\b|(?<!\bi )(?<!to )(?<!'ll )\bchecks? my (?:phone|messages|texts)\b(?! bill)|\bcontrols? (?:all )?(?:the|my|our) (?:money|finances|phone)\b|\bnot allowed to (?:work|leave|see|go out|have)\b", MO, "coercive control", negatable=False),
    _p(AV, r"\bstalk(?:ing|s|ed)? me\b|\b(?:turns?|turning|turned|keeps turning) up (?:outside|at) my\b|\bfollow(?:s|ing|ed) me (?:home|to work|around)\b", MO, "stalking"),
    _p(AV, r"\b(?:choked|strangled) me\b|\b(?:grabbed|grabs|held|holds|had|pinned|pinning) me (?:by|round|around) (?:my|the) (?:neck|throat)\b|\b(?:hands?|arm) (?:round|around|on) my (?:neck|throat)\b", HI, "strangulation"),
    _p(AV, r"\b(?:kicked|hit|punched|pushed|beat|hurt|shoved) me\b[^.]{0,40}\b(?:while|when) i was pregnant\b", HI, "violence in pregnancy"),
    # --- substance use
    _p(SU, rf"\b{_I}\b[^.;]{{0,25}}?\b(?:using|use|used|taking|take|took|smoke|smoking|smoked|doing|do|did|snort(?:ing|ed)?|inject(?:ing|ed)?|shooting up|on|popping|popped|buy|buying|bought|score|scoring)\b[^.;]{{0,25}}?\b{_DRUGS}\b", MO, "drug use"),
    _p(SU, r"\b(?:popping|popped|stealing|stole) (?:of )?(?:my |some |a few )?(?:\w+'s )?(?:painkillers|pills|tablets|meds)\b|\b(?:taking|take|took|using) (?:my |some of my )?\w+'s (?:painkillers|pills|tablets|prescription|meds)\b", MO, "prescription misuse"),
    _p(SU, r"\bextra (?:of )?(?:my )?\w*(?:codone|morphine|tramadol|codeine|xanax|valium|pills|tablets)\b", MO, "prescription misuse"),
    _p(SU, r"\b(?:i|i'm|i've been|i was|i got|got|get|getting|been) (?:so )?(?:high|stoned|wasted|hammered|smashed|drunk|off my face|out of it)\b(?! (?:school|street|hopes|alert|functioning|it|the|that|this|my|those|them|a|an)\b)", MO, "intoxication"),
    _p(SU, r"\b(?:drove|drive|driving|drives)\b[^.]{0,15}\b(?:drunk|high|stoned|after drinking|over the limit)\b|\bdrink[- ]driving\b|\bdrunk[- ]driving\b", HI, "intoxicated driving"),
    _p(SU, r"\brelaps(?:e|ed|ing)\b|\b(?:used|using|drank|picked up|started using|started drinking|back on (?:the|it)) again\b", MO, "relapse"),
    _p(SU, r"\b(?:had (?:a|some|a few) drinks?|been drinking|drunk|after (?:a|some|a few) drinks?)\b[^.]{0,60}\b(?:behind the wheel|drove|drive|driving|got in the car)\b|\b(?:drove|driven|driving|drive)\b[^.]{0,60}\b(?:still (?:be |been |was |am )?over|over the limit|still drunk|still tipsy|had a drink|been drinking)\b", HI, "intoxicated driving"),
    _p(SU, r"\bdrinking before (?:i |you |he |she )?(?:drove|drive|driving|got in the car)\b|\b(?:drove|driving|drives) (?:the )?(?:kids|boys|girls|children)\b[^.]*\b(?:drunk|drinking|had a few|over the limit)\b", HI, "intoxicated driving"),
    _p(SU, r"\b(?:the )?shakes\b[^.]*\b(?:drink|drop|whisky|vodka|can)\b|\b(?:drink|drop|whisky|vodka)\b[^.]*\b(?:steady|stop) (?:my|the) (?:hands|shakes|shaking)\b|\bfirst drink\b[^.]*\b(?:morning|wake)\b", MO, "physical dependence"),
    _p(SU, rf"\b(?:most of |half )?a (?:full )?bottle of {_ALCOHOL}\b[^.]*\b(?:a day|every day|by the end of the day|each day|a night)\b", MO, "heavy drinking"),
    _p(SU, r"\b(?:woke up|came to)\b[^.]{0,20}\b(?:on|in) (?:the )?(?:kitchen |bathroom |hall )?(?:floor|a cell|a&e|hospital)\b|\b(?:had|been) (?:dry|sober|clean) (?:for )?\w+ (?:weeks|months|years)\b[^.]*\b(?:had|one) (?:one|a) (?:beer|drink|glass)\b", MO, "relapse with harm"),
    _p(SU, r"\b(?:drink|drank|drinking|drunk|used|using) (?:a lot|too much|heavily|way too much)\b(?! of (?:water|tea|coffee|juice|milk))", MO, "heavy use"),
    _p(SU, rf"\b(?:litre|liter|half a bottle|fifth|bottle|crate|case) of {_ALCOHOL}\b|\b(?:two|three|four|five|\d+) (?:bottles|litres|liters|cans|pints|crates) of {_ALCOHOL}\b", MO, "heavy drinking"),
    _p(SU, r"\b(?:doing|did|do|snorting|racking up) (?:a few |some )?(?:lines|bumps|key bumps)\b|\blines of (?:coke|cocaine|speed|ket)\b", MO, "drug use"),
    _p(SU, r"\bneed (?:a drink|a hit|a fix|to use|to get high)\b|\bdrink (?:as soon as|when|the moment) i wake\b", MO, "dependence"),
    _p(SU, r"\b(?:i|i've|i'd|i had|i was)\b[^.]{0,15}\bblack(?:ed|ing)? out\b(?! the| my| our)|\bblackouts\b", MO, "blackouts"),
    _p(SU, rf"\bbottle of {_ALCOHOL}\b|\b{_NUM}(?: or {_NUM})? (?:beers|drinks|pints|shots|glasses|cans|vodkas)\b", MO, "heavy drinking"),
    _p(SU, r"\bdrinking (?:every|each) (?:night|day|morning|evening)\b|\bdrinking in the mornings?\b|\b(?:started|start|been) drinking (?:again|more|heavily|in the)\b(?! (?:water|fluids|tea|coffee|juice|milk))|\bdrinking (?:heavily|too much|a lot more)\b|\bdrink (?:every|each) (?:night|day|morning)\b", MO, "heavy drinking"),
    _p(SU, r"\b(?:can't|cannot|couldn't) (?:go|get through|make it through|manage) (?:a|one|the) (?:day|night|evening)(?: \w+)? without (?:a drink|drinking|using|a joint|a smoke|getting high|my \w+)\b", MO, "dependence", negatable=False),
    _p(SU, rf"\b{_ALCOHOL}\b[^.]{{0,20}}\bonly thing that\b|\bonly thing that (?:helps|works|numbs)[^.]{{0,20}}\b(?:{_ALCOHOL}|drinking|weed|getting high)\b", MO, "alcohol as coping"),
    _p(SU, r"\b(?:drinking|drug|alcohol|substance|gambling) problem\b|\b(?:addicted to|addiction to|dependent on|hooked on) (?:alcohol|drink|drugs|\w+)\b|\bproblem with (?:drinking|alcohol|drugs)\b", MO, "substance problem"),
    # --- hopelessness
    _p(HP, r"\bhopeless(?:ness)?\b", MO, "hopelessness"),
    _p(HP, r"\bcan't (?:imagine|see|picture) (?:things |it |life |myself )?(?:ever )?(?:getting|being|feeling) (?:any )?(?:better|happy|ok|okay)\b", MO, "hopelessness", negatable=False),
    _p(HP, r"\bwhy (?:even )?bother\b|\bnothing (?:ever )?(?:works|helps)\b|\bmy life is (?:over|ruined|finished|a waste)\b", MO, "futility"),
    _p(HP, r"\b(?:lost|losing|no|without|given up) (?:all )?hope\b", MO, "hopelessness", negatable=False),
    _p(HP, r"\bnothing (?:is|'s|will) (?:ever )?(?:going to |gonna )?(?:get|gets|be|change|improve)(?: any)? ?(?:better|different)?\b", MO, "hopelessness", negatable=False),
    _p(HP, r"\b(?:never|not ever|isn't ever|won't ever) (?:going to |gonna )?(?:get|gets) (?:any )?better\b|\b(?:it's|it is|things are) never going to (?:change|get better|improve)\b", MO, "hopelessness", negatable=False),
    _p(HP, r"\balways be (?:like this|this way)\b", MO, "permanence", negatable=False),
    _p(HP, r"\bwhat'?s the point\b|\bwhat is the point\b|\bno point (?:in|to|trying|anymore|any more)\b|\b(?:don't|can't) see (?:the|any) point\b|\bpointless\b", MO, "futility", negatable=False),
    _p(HP, r"\b(?:i )?(?:don't|do not) have (?:a|any) future\b|\bno future\b|\bnothing to look forward to\b", MO, "no future", negatable=False),
    _p(HP, r"\b(?:i'm|i am|i feel like|feel like) (?:a|such a|just a) (?:burden|waste of space)\b|\bburden (?:to|on) (?:everyone|everybody|my \w+|people|them|you)\b", MO, "burdensomeness"),
    _p(HP, r"\b(?:can't|cannot|don't) see (?:a|any) way (?:out|forward)\b|\bno way out\b|\b(?:feel|feeling|i'm|i am) (?:so |completely )?trapped\b", MO, "entrapment", negatable=False),
    _p(HP, r"\bnothing left (?:for me|to live for)\b|\bnothing to live for\b", MO, "hopelessness", negatable=False),
    _p(HP, r"\bi(?:'ve| have)? (?:just )?given up\b|\bi give up\b|\bgave up on (?:everything|myself|life)\b", MO, "giving up"),
    _p(HP, r"\bno matter what i do\b|\b(?:won't|doesn't|will not|wouldn't) make (?:any|a|the slightest) difference\b", MO, "helplessness", negatable=False),
    _p(HP, r"\b(?:can't|cannot) (?:keep going|go on|carry on|do this anymore|take (?:it|this|much more))\b|\bwant (?:it )?(?:all )?to (?:be over|end|stop)\b(?<!don't want it to end)", MO, "exhaustion/hopelessness", negatable=False),
    # --- other risk: eating disorder, psychosis, medication, dissociation, neglect, recklessness
    _p(OT, r"\bmak(?:e|ing) myself (?:throw up|sick|vomit|puke)\b|\bthrow(?:ing)? up after (?:meals|eating|i eat|dinner|lunch)\b|\bpurg(?:e|ing|ed)\b|\blaxatives\b", MO, "eating disorder behaviour"),
    _p(OT, r"\b(?:haven't|have not|hadn't|not) eaten (?:anything |properly )?(?:in|for) (?:\w+ )?(?:days|a week|weeks)\b|\bstarv(?:ing|ed|e) myself\b|\bstopped eating\b", MO, "restriction", negatable=False),
    _p(OT, r"\bvoices? (?:\w+ ){0,2}(?:telling|tell|told|tells|saying|say|said|command|commanding)\b|\bhearing voices\b|\bhear voices\b", MO, "hallucinations"),
    _p(OT, r"\b(?:the )?voices?\b[^.]{0,20}\b(?:came back|come back|are back|back again|louder|got worse|started again)\b", MO, "hallucinations returned", third_party_ok=True),
    _p(OT, r"\b(?:the )?(?:tv|telly|television|radio|songs?|adverts?)\b[^.]{0,25}\b(?:talking to me|talks to me|speaking to me|messages? (?:for|to) me)\b|\b(?:it's|it is|like) a sign\b|\b(?:been )?chosen for me\b|\b(?:are|is|were) in on it\b|\blisten(?:ing)? (?:to me )?through the walls?\b", MO, "psychotic experiences", third_party_ok=True),
    _p(OT, r"\b(?:fainted|passed out|collapsed|blacked out)\b[^.]{0,30}\b(?:twice|this week|again|times|yesterday|in the)\b|\b(?:twice|three times|again) this week\b(?=[^.]*\b(?:fainted|passed out|collapsed)\b)", HI, "acute medical danger (fainting)"),
    _p(OT, r"\b(?:(?:five|four|three|six) hundred|\d{3}) calories\b|\bperiods? (?:have |has )?stopped\b", MO, "restriction"),
    _p(OT, r"(?<!nearly )(?<!almost )(?<!could have )(?<!could've )\b(?:fainted|passed out|collapsed)\b(?! (?:laughing|from laughing|drunk|after (?:the|a) (?:party|night out)|on the sofa|in front of the tv))", MO, "fainting"),
    _p(OT, r"\b(?:had|have|'ve had|was diagnosed with|been diagnosed with|struggled with|developed|recovered from|relapse of) (?:\w+ )?(?:anorexia|bulimia|an eating disorder|binge[- ]eating disorder)\b|\b(?:heart rate|pulse)\b[^.]{0,30}\b(?:forty|thirty|fifty|\d\d)\b[^.]{0,30}\b(?:low|dangerous)\b", MO, "eating disorder"),
    _p(OT, r"\b(?:they've been|they keep|they're|they are|it keeps|they|it) (?:telling|tell|told|tells|ordering|order) me to (?:hurt|kill|harm|cut|burn) (?:myself|someone|him|her|people|them)\b", HI, "command hallucinations", third_party_ok=True),
    _p(OT, r"\bstopped (?:taking )?(?:my |the )?(?:meds|medication|medications|lithium|antipsychotics?|antidepressants?|pills|tablets|insulin)\b|\bcome off (?:my |the )?(?:meds|medication|lithium)\b", MO, "medication discontinuation"),
    _p(OT, r"\b(?:poison|poisoning|poisoned) me\b|\bputting (?:things|something|stuff) in my (?:food|drink|water)\b|\b(?:they're|they are|people are) (?:watching|following|after) me\b", MO, "paranoid ideation"),
    # Round 8: ideas of reference and persecution in everyday words, often told by a relative:
    # "it's meant for me, it's instructions", "the FBI been sitting outside the house", "said it was a camera".
    _p(OT, r"\b(?:it's|it is|they're|they are|that's|it was) (?:meant|intended) for me\b|\bit's (?:instructions|a code|code)\b|"
       r"\b(?:there's|there are|there is) people watching\b|\b(?:fbi|cia|mi5|feds|secret service|government)\b[^.]{0,30}\b(?:watching|following|"
       r"sitting outside|parked outside|listening|tapped|bugged)\b|\b(?:said|says|thinks|thought|convinced) (?:it|that|the \w+) (?:was|is) (?:a )?"
       r"(?:camera|bug|listening device|microphone|tracker)\b|\b(?:phone|house|flat|room) (?:is|was) (?:bugged|tapped)\b", MO,
       "ideas of reference or persecution", third_party_ok=True),
    _p(OT, r"\b(?:don't|do not) care if i (?:crash|get hurt|get killed)\b|\b(?:driving|drive|drove) (?:really |so )?(?:fast|recklessly|dangerously) on purpose\b", MO, "reckless behaviour", negatable=False),
    _p(OT, r"\b(?:sending|sends|sent|giving) me (?:secret |special |hidden )?(?:messages|signals|signs)\b|\b(?:talking|speaking) to me through\b", MO, "ideas of reference"),
    _p(OT, r"\b(?:thoughts are|mind is|thoughts keep) racing\b|\bracing thoughts\b", MO, "possible mania", negatable=False),
    _p(OT, r"\bi(?:'ve| have| keep)? (?:los(?:e|ing|t)) (?:time|hours|chunks of (?:time|the day))\b|\bdon't know how i got there\b|\bfind myself (?:in )?(?:places|somewhere)\b", MO, "dissociation", negatable=False),
    _p(OT, r"\bleft (?:the|my) (?:baby|kids|children|son|daughter|toddler) (?:alone|on (?:his|her|their) own|home alone)\b", HI, "child safety"),
)

_NEGATION = re.compile(
    r"\b(?:not|never|no|nor|none|nothing|cannot|without|deny|denies|denied|neither)\b|n't\b|\bno longer\b",
    re.IGNORECASE,
)
_POST_NEGATION = re.compile(
    r"^\W*(?:\w+\W+){0,2}?(?:isn't|is not|wasn't|was not|is never|never|not)\b(?! only)", re.IGNORECASE
)
_HYPOTHETICAL = re.compile(
    r"\bif (?:i|you|someone|somebody|anyone|they|a person|people|one) (?:ever|were|was ever)\b|"
    r"\bwhat (?:should|would|do|can|does) (?:someone|somebody|people|you|a person|one) do\b|"
    r"\bhow (?:do|would|can|could) (?:you|i|people|we) (?:know|tell|help|spot)\b|\bhypothetically\b|\bwhat if\b|"
    r"\b(?:in case|just so) (?:i|you) (?:ever )?(?:feel|felt)\b|\bif (?:someone|anyone|anybody|somebody|he|she|they) (?:ever )?(?:hurt|hurts|touched|touches|laid|harmed|harms|hit|hits|went near|came near)\b(?![^.]{0,60}\bagain\b)|"
    # ("...if he hits her again": it has happened, a conditional threat over real harm, not a hypothetical)
    r"\bwhat (?:would|will|might|could) happen if\b|"
    r"\bif i'd\b[^.]*\b(?:i'd have|i would have|i'd've)\b|\b(?:imagine|imagining|picture|picturing) (?:if|what if|what would)\b",
    re.IGNORECASE,
)
_EDUCATION = re.compile(
    r"\b(?:prevention|awareness|assembly|training|documentary|novel|book|film|movie|article|podcast|course|"
    r"workshop|lecture|leaflet|character|episode|show|series|read about|heard about|learn(?:ed|t)? about|"
    r"statistics|research|hotline number)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|myself)\b", re.IGNORECASE)
_THIRD_PARTY_SUBJECT = re.compile(
    r"\b(?:my|his|her|their|a|our) (?:friend|friend's \w+|cousin|brother|sister|mum|mom|dad|son|daughter|"
    r"neighbou?r|colleague|client|partner|husband|wife|uncle|aunt)(?:'s)?\b(?:[^.,;]{0,40})\b(?:is|was|has|had|tried|feels|felt|said|says)\b",
    re.IGNORECASE,
)
_HISTORICAL = re.compile(
    r"\bused to\b|\byears ago\b|\b(?:in|back in|since) (?:19\d\d|20[01]\d)\b|\b(?:a|many|several|few) years back\b|\bwhen i was (?:a |an )?(?:kid|child|teen|teenager|"
    r"little|young|younger|small|at school|in school|\w*teen|\d+|twenty|thirty)\b|\bas a (?:kid|child|teenager|boy|girl|lad|lass|wean|bairn|youngster)\b|\bin the (?:fifties|sixties|seventies|eighties|'?[5-8]0s)\b|"
    r"\bin my (?:teens|twenties|thirties|twenties|youth)\b|\bhaven't (?:done it |since|for (?:years|ages))|"
    r"\bnot (?:since|for years|in (?:over |more than )?(?:\w+|\d+) (?:years|months))\b|\b(?:sober|clean) (?:for|since)\b|"
    r"\bgrowing up\b|\bback then\b|\bin the past\b|\b(?:i was|until i was|since i was) (?:about |around )?(?:\d+|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen)\b|\bwhen i (?:was|got)\b[^.]{0,25}\bat (?:school|uni|college)\b|"
    r"\b(?:fine|well|okay|ok|good) (?:ever )?since\b|\bsince (?:early |late )?(?:then|that|summer|spring|autumn|winter)\b|"
    r"\bwhen it all (?:came out|happened|kicked off)\b|\b(?:back )?in (?:january|february|march|april|june|july|august|september|"
    r"october|november|december)\b(?=[^.]*\b(?:was|were|had|did|thought|went|got)\b)|"
    r"\b(?:six|seven|eight|nine|ten|eleven|twelve|fifteen|eighteen|\d{2}|several|many) months (?:ago|back)\b|"
    r"\b(?:most|all|much) of my (?:teens|twenties|thirties|forties|childhood|adolescence)\b|"
    r"\b(?:sober|clean|dry|abstinent)\b[^.]{0,15}\b(?:\w+ )?(?:years?|months)\b|\b(?:i was|i got) (?:in|admitted|sectioned)\b[^.]*\b(?:weeks|months)\b",
    re.IGNORECASE,
)
_CURRENT = re.compile(r"\b(?:again|still|(?<!years )(?<!months )now|lately|recently|this week|last night|yesterday|at the moment|these days)\b", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r",|;|:|\s[-\u2013\u2014]\s|\bbut\b|\bthough\b|\balthough\b|\bhowever\b|\bbecause\b", re.IGNORECASE)


def _clause_prefix(sentence: str, match_start: int) -> str:
    """Text of the clause that contains ``match_start``, up to the match (at most 8 words)."""
    head = sentence[:match_start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    if breaks:
        head = head[breaks[-1].end():]
    # Negation belongs to the nearest subject: in "if things don't get better I'm going
    # to end my life" the "don't" is in a different proposition from "I'm going to".
    subjects = list(re.finditer(r"\b(?:i|i'm|i've|i'd|i'll)\b", head))
    if subjects:
        head = head[subjects[-1].start():]
    words = head.split()
    return " ".join(words[-8:])


def _clause(sentence: str, match_start: int) -> str:
    head = sentence[:match_start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    start = breaks[-1].end() if breaks else 0
    tail = sentence[match_start:]
    nxt = _CLAUSE_BREAK.search(tail)
    end = match_start + (nxt.start() if nxt else len(tail))
    return sentence[start:end]


def _is_negated(sentence: str, m: re.Match[str]) -> bool:
    prefix = _clause_prefix(sentence, m.start())
    if _NEGATION.search(prefix):
        return True
    # Negation inside a subject...verb pattern: "I've never hurt anyone", "he's never laid a hand"
    inner = m.group(0)
    if len(inner.split()) > 3 and _NEGATION.search(inner):
        return True
    tail = sentence[m.end():m.end() + 30]
    brk = _CLAUSE_BREAK.search(tail)
    return bool(_POST_NEGATION.match(tail[:brk.start()] if brk else tail))


_OTHER_PERSON = re.compile(
    r"\b(?:he|she|they|he's|she's|they're|someone|somebody|people|a friend|my friend|(?:my|his|her|our|a) (?:best |old |close )?(?:friend|sister|brother|"
    r"mum|mom|dad|son|daughter|cousin|partner|husband|wife|colleague|client|neighbou?r|mate|pal|flatmate|roommate|classmate|teammate|"
    r"boss|boyfriend|girlfriend|niece|nephew|uncle|aunt)\w*(?:'s)?)\b",
    re.IGNORECASE,
)
#: "I could kill him for eating my leftovers": exasperation, not a threat.
_ANNOYANCE_IDIOM = re.compile(r"^\s*(?:for (?:\w+ing|being|not|that|this|it)\b|when (?:he|she|they) (?:sees?|finds? out|hears?)\b)")


def _generic_applies(sentence: str, m: re.Match[str]) -> bool:
    """A bare keyword ("suicidal", "self-harm") counts only as the speaker's own experience.

    Suppressed in education/media talk and when the clause is about another person; a
    question flags only if it is first-person ("is it normal that I feel suicidal?").
    """
    if _EDUCATION.search(sentence):
        return False
    clause = _clause(sentence, m.start())
    before = clause[: max(0, clause.find(m.group(0)))]
    first = bool(_FIRST_PERSON.search(before)) or (not _OTHER_PERSON.search(before) and bool(_FIRST_PERSON.search(clause)))
    if _OTHER_PERSON.search(before) and not _FIRST_PERSON.search(before):
        return False
    if _OTHER_PERSON.search(clause) and not first:
        return False
    if _THIRD_PARTY_SUBJECT.search(sentence) and not first:
        return False
    if sentence.rstrip().endswith("?") and not first:
        return False
    return True


# --- context rules added for episode-level flags (issue 14) ------------------------------
#: Idioms built on risk words; blanked out before matching, so the rest of the sentence still counts.
_IDIOM = re.compile(
    r"\b(?:is|are|was|were|'s|'re) killing me\b|\bkill(?:ing)? (?:time|two birds|it|the vibe|the mood)\b|"
    r"\b(?:could|would|'d) (?:kill|murder|die) for\b|(?<!want )(?<!wants )(?<!wanted )(?<!wish )(?<!wished )(?<!wanting )\bto die for\b(?! (?:a (?:while|bit|long time|few|couple)|ages|months|years|weeks|some time|so long))|\b(?:dying|died|die) (?:of|from) "
    r"(?:embarrassment|boredom|laughter|shame|cringe)\b|\b(?:nearly|almost|literally|could have|could've) died "
    r"(?:laughing|of|when|at)\b|\bdying to\b|\bbored to death\b|\bscared (?:me )?to death\b|\bdrop dead\b|"
    r"\bover my dead body\b|\b(?:suicide (?:mission|run|squad|doors?|bid|pact with (?:a|the) \w+)|(?:political|career|social|commercial) suicide)\b|\bkill(?:s|ed)? (?:me|us) (?:if|when)\b(?=[^.]*\b(?:late|forget|find out|see|know)\b)|"
    r"\bshoot me now\b|\brather die than\b|\b(?:the )?ground (?:to )?swallow me\b|\bmurder(?:ed)? (?:the|that) (?:song|exam|test|presentation|interview)\b|"
    r"\bcut(?:ting)? (?:me|myself|him|her) (?:some )?slack\b|\bcut (?:corners|ties|back|down)\b|\bkiller (?:workout|headache|hangover)\b|"
    r"\b(?:i'm|i am|i was) dead (?:tired|serious|on my feet)\b|\bdead (?:tired|serious)\b|\bkicking myself\b|"
    r"\bbeat(?:ing)? myself up\b|\bshot myself in the foot\b|\bhurt(?:s)? like hell\b|\bwant(?:ed)? to (?:die|disappear|crawl) "
    r"(?:of|from) (?:embarrassment|shame)\b|\bwhen pigs\b|\bmy (?:mum|mom|dad|wife|husband|boss) (?:is going to|will|'ll|would|'d) kill me\b",
    re.IGNORECASE,
)
#: A question put to someone else ("do you ever want to die?"): a screening question, not a disclosure.
_SCREENING_QUESTION = re.compile(
    r"^(?:\w+,? )?(?:have|had|do|did|are|were|has|would|could|is|any)\b[^?]*\byou(?:rself|r|'re|'ve)?\b[^?]*\?\s*$|"
    r"^(?:what about|how about|and|so|any)\b[^?]*\b(?:you|yourself)\b[^?]*\?\s*$",
    re.IGNORECASE,
)
#: Films, songs, books, the news: quoted or retold content, not the speaker's own experience.
_MEDIA = re.compile(
    r"\b(?:song|lyrics?|film|movie|show|series|book|novel|character|episode|video game|game|tiktok|meme|poem|"
    r"documentary|podcast|article|the news|headline|play we|sitcom|soap|netflix|youtube|rapper|singer|band)\b",
    re.IGNORECASE,
)
_REPORTING_FRAME = re.compile(
    r"\b(?:he|she|they|someone|(?:my|his|her|a|our|their|the|this|that) [a-z']+(?: [a-z']+)?)(?: \w+)? "
    r"(?:said|says|told me|tells me|texted|messaged|wrote|posted|goes|went|keeps saying|kept saying|was like|is like|"
    r"admitted|confided|mentioned|sings|sang)\b",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"\b(?:i|i'm|i've|i'd|i'll|we|we're|he|she|they|he's|she's|they're|he'd|she'd|they'd|"
    r"(?:my|our) (?:friend|mate|sister|brother|mum|mom|dad|cousin|son|daughter|partner|husband|wife|boyfriend|"
    r"girlfriend|colleague|flatmate|roommate|neighbou?r|uncle|aunt|nan|gran)(?:'s)?|"
    r"a (?:lad|guy|girl|man|woman|kid|boy|patient|client|student|teenager|young (?:man|woman|lad|girl|guy)))\b",
    re.IGNORECASE,
)
_FIRST_PERSON_SUBJECT = re.compile(r"^(?:i|i'm|i've|i'd|i'll|we|we're)$", re.IGNORECASE)
#: Categories about the speaker's own state; abuse and harm-to-others patterns carry their own roles.
_SELF_CATEGORIES = {SI, SH, SU, HP, OT}
#: "I'll kill him if he eats my leftovers again": exasperation over a trivial trigger.
_TRIVIAL_TRIGGER = re.compile(
    r"\b(?:kill|murder|strangle) (?:him|her|them|my \w+)\b[^.]*\b(?:if|when|for) (?:he|she|they|it)?\b[^.]*\b(?:late|"
    r"forgets?|eats?|ate|finish(?:es|ed)?|leaves? the|left the|dishes|milk|leftovers|chocolate|spoil|remote|socks|"
    r"touches? my (?:phone|stuff|food)|again)\b",
    re.IGNORECASE,
)


#: ...unless the trigger is harm: "I'll kill him if he hits her again" is a conditional threat
#: to protect someone, not exasperation (round 8: found while checking the trivial-trigger rule).
_HARM_CONDITION = re.compile(
    r"\b(?:if|when|for) \w+\b[^.]{0,40}\b(?:hits?|hitting|hurts?|hurting|touch(?:es|ed)?|lays? (?:a )?(?:hand|finger)|"
    r"(?:comes?|goes?|gets?) near|beats?|rapes?|abuses?|threatens?|harms?|kills?|chokes?|strangles?|stabs?) (?:her|him|them|me|us|my|our|the (?:kids?|children|baby))\b",
    re.IGNORECASE,
)


#: In a couple or family session the partner or child spoken about is a client in the room.
_FAMILY_MEMBER_IN_ROOM = re.compile(
    r"^(?:my|our) (?:son|daughter|kid|child|boy|girl|teenager|husband|wife|partner|boyfriend|girlfriend)(?:'s)?\b")


_MEDIA_QUOTE = re.compile(r"\b(?:go|goes|went|sings?|sang|says?|said|is like|was like|ends? with|about)\b")
_TALK_ABOUT_TALK = re.compile(r"\b(?:when|what|that|how|after|before) i (?:said|mentioned|told you|brought up|talked about)\b")
_NOMINAL_TAIL = re.compile(r"^\W*(?:\w+\W+)?(?:thing|stuff|bit|part|comment)\b")
_IN_ROOM_PRONOUN = re.compile(r"^(?:he|she|he's|she's|he'd|she'd)$")
_OUT_OF_ROOM = re.compile(
    r"\b(?:friend|mate|colleague|coworker|co-worker|neighbou?r|cousin|aunt|uncle|sister|brother|boss|teacher|classmate|"
    r"someone|somebody|a (?:guy|girl|man|woman|kid|boy)|character|celebrity|singer|actor|ex|flatmate|roommate|client|patient|"
    r"grand(?:ma|pa|mother|father|dad)|nan|gran|in-law)\w*\b")


def _own_experience(norm: str, m: re.Match[str], category: RiskCategory, family_session: bool = False) -> bool:
    """False for third-party talk, reported speech and quoted media.

    "My friend said she wanted to die", "my sister's been cutting", "in the film he says he
    wants to kill himself": the nearest subject before the match is someone else, or a
    third party's words are being reported, or a film/song is being retold. In a session
    with several clients, a partner or child reporting on another ("my daughter has been
    cutting") is a disclosure about someone in the room and counts.
    """
    head = norm[:m.start()]
    media = _MEDIA.search(norm)
    if media and (_REPORTING_FRAME.search(head) or '"' in head or not _FIRST_PERSON.search(head)
                  or _MEDIA_QUOTE.search(head[media.end():] if media.end() <= len(head) else "")):
        return False  # "the lyrics go something like I want to die tonight"
    if _TALK_ABOUT_TALK.search(head) and _NOMINAL_TAIL.match(norm[m.end():]):
        return False  # "...when I said the sleep and not wake up thing": naming an earlier disclosure
    if category is HO:
        # "her boyfriend said I looked like I wanted to kill them": someone else's account of the client
        frame = None
        for frame in _REPORTING_FRAME.finditer(head):
            pass
        return frame is None or bool(re.match(r"^(?:i|my)\b", frame.group(0))) or bool(
            re.search(r"\b(?:and|but) (?:i|i'm|i've)\b", head[frame.end():]))
    if category not in _SELF_CATEGORIES:
        return True
    frame = None
    for frame in _REPORTING_FRAME.finditer(head):
        pass
    in_room = family_session and bool(frame and _FAMILY_MEMBER_IN_ROOM.match(frame.group(0)))
    if frame is not None and not in_room and not re.match(r"^(?:i|my)\b", frame.group(0)):
        after = head[frame.end():]
        # "she told me I was a burden" stays a first-person clause; "she said she wanted to die" does not.
        if not re.search(r"\b(?:and|but) (?:i|i'm|i've)\b", after):
            return False
    subjects = [x.group(0) for x in _SUBJECT.finditer(head)]
    if family_session and subjects and _FAMILY_MEMBER_IN_ROOM.match(subjects[-1]):
        return True
    if family_session and subjects and _IN_ROOM_PRONOUN.match(subjects[-1]) and not _OUT_OF_ROOM.search(norm):
        # A parent or partner reporting on someone in the room ("she'd been looking up how many
        # tablets it would take"): a collateral disclosure, unless the sentence names someone
        # outside the session (a friend, a colleague, a sister) the pronoun can refer to.
        return True
    return not subjects or bool(_FIRST_PERSON_SUBJECT.match(subjects[-1]))


#: Everyday talk that shares words with a pattern ("I burned my hand on the kettle", "she
#: pushed me to apply", "high on adrenaline", "we shared a bottle of wine").
_BENIGN_CONTEXT: dict[RiskCategory, re.Pattern[str]] = {
    SH: re.compile(r"\baccident(?:al(?:ly)?)?\b|\bby mistake\b|\bon (?:the|a) (?:kettle|stove|oven|iron|pan|hob|cupboard|door|shelf|"
                   r"car|grill|radiator|shelf)\b|\bchopping\b|\bcooking\b|\btripped\b|\bslipped\b", re.IGNORECASE),
    AV: re.compile(r"\b(?:as a joke|joking|jokingly|playfully|messing (?:about|around)|play[- ]?fight\w*|tickl\w*)\b|"
                   r"\bpush(?:es|ed|ing)? (?:me|us) to (?!the\b)\w+|\b(?:threw|throws|throw|throwing) (?:the |a )?(?:ball|keys|frisbee)\b|"
                   r"\bbeat (?:me|us) (?:at|to|in)\b|\bphone bill\b|\bwork from home\b|\b(?:by|from) (?:a|the) (?:swan|dog|goose|bird|"
                   r"wasp|bee|cat|seagull|horse)\b|"
                   r"\b(?:kick|kicked|kicks|kicking|throw|threw|throws|chuck\w*|push\w*) (?:me|us) out\b|"
                   r"\bdrag(?:s|ged|ging)? (?:me|us) (?:here|along|in|to (?:this|these|therapy|sessions?|church|parties|the shops|the gym))\b|"
                   r"\b(?:anyone|anybody|someone|somebody|whoever|people|a (?:man|guy|woman|person)) (?:who|that) (?:\w+ )?(?:ever )?\w+ (?:me|us)\b(?=[^.]*\b(?:would|'d|will|'ll|said|says)\b)", re.IGNORECASE),
    SU: re.compile(r"\bhigh on (?:adrenaline|life|sugar|caffeine|love|endorphins)\b|\baddicted to (?:my |her |his |their |that |the )?"
                   r"(?:phone|show|series|tv|chocolate|coffee|netflix|games?|gaming|social media|tiktok|instagram|work|running|gym)\b|"
                   r"\bblack(?:ed|ing)? out the\b|\bdrink of (?:water|tea|coffee|juice|milk)\b|"
                   r"\b(?:shared|split|sharing|bought|gift(?:ed)?|present|opened)\b[^.]{0,20}\bbottle\b", re.IGNORECASE),
    OT: re.compile(r"\b(?:lost|lose|losing) time (?:on|because|in traffic|at|with)\b|\b(?:before|about|for) (?:the|my|an?) "
                   r"(?:exam|interview|test|presentation|meeting|wedding|trip)\b", re.IGNORECASE),
}
#: Hopelessness about one mundane thing ("nothing ever works with the printer", "hopeless at
#: cooking", "trapped in this job") is frustration, not hopelessness about life.
_HP_SCOPE = re.compile(
    r"^\s*(?:(?:at|with|of|for|in|about|on|trying to|to get|getting)\s+(?!(?:even |just |really )?(?:anything|everything|it all|life|"
    r"living|my life|me|myself|being|going on|carrying on|the future|trying|this life|any of it|(?:this|it|that)(?=\s*(?:[.,!?;]|$)))\b)|(?:sugar|chocolate|smoking|meat|caffeine|coffee)\b)",
    re.IGNORECASE,
)
#: "I could have strangled him when he told that story": exasperation unless intent is stated.
_EXASPERATION = re.compile(r"\b(?:could(?: have|'ve)?) (?:kill(?:ed)?|strangled?|murder(?:ed)?|throttled?|throttle)\b",
                           re.IGNORECASE)


def _benign_context(pat: Pattern, norm: str, m: re.Match[str]) -> bool:
    rx = _BENIGN_CONTEXT.get(pat.category)
    if rx is not None and rx.search(norm):
        return True
    if pat.category is HP and _HP_SCOPE.match(norm[m.end():]):
        return True
    if pat.category is HO and _FEARED_OTHER.search(norm):
        return True  # "I'm scared he'll hurt the baby": someone else is the danger
    if pat.label in _COLLATERAL_LABELS and _NON_FAMILY.search(norm):
        return True  # "my friend's dad hit her with a belt": someone outside the family's abuse
    if pat.category is AV and _DETENTION.search(norm):
        return True  # "If I go, will they lock me up?": fear of being detained, not abuse
    if pat.category is AV and _TRIVIAL_THREAT.search(norm):
        return True  # "he said he'd kill me if I touched his stuff again": sibling exasperation
    if pat.category in (HO, AV) and _RELATIVE_AGENT.search(m.group(0)):
        return True  # "I read about a dad who hurt his kid": the agent is the relative clause's subject
    if pat.category is HO and _INTRUSIVE_FEAR.search(norm) and not _INTENT_STRICT.search(norm):
        return True  # "I'm terrified I might hurt the baby": an unwanted intrusive thought, not intent
    if pat.category is HO and _WHEN_TRIGGER.search(norm) and not _WEAPON.search(norm):
        return True  # "When he sees his report I'm going to murder him": exasperation at a trigger
    return pat.category is HO and bool(_EXASPERATION.search(norm)) and not _INTENT.search(norm)


#: "a dad who actually hurt his kid", "anyone who hurt me": the verb belongs to someone else.
_COLLATERAL_LABELS = {"physical punishment with an implement", "injuries from abuse", "abuse of a family member"}
_NON_FAMILY = re.compile(r"\b(?:friend|mate|pal|colleague|coworker|co-worker|neighbou?r|classmate|boss|teacher|someone|somebody|"
                         r"a (?:guy|girl|man|woman|kid|boy)|character|client|patient)\w*\b")
_TRIVIAL_THREAT = re.compile(r"\bkill (?:me|us)\b[^.]*\bif (?:i|we)\b[^.]*\b(?:touch\w* (?:his|her|their|my) (?:stuff|things|phone|xbox|games?|clothes|room)|"
                             r"(?:ate|eat|eats|finish\w*) (?:his|her|their) \w+|borrow\w*|(?:was|were|am|are|'m|'re) late|forg[eo]t)\b")
_DETENTION = re.compile(r"\b(?:will|would|could|might|are|do|did) (?:they|you|the (?:police|hospital|doctors?|staff|cops))(?: \w+)?(?: to)? "
                        r"(?:lock|locked|put|take|send|commit|section) (?:me|us|him|her|them) (?:up|away|in hospital|inside)\b")
#: Only an indefinite antecedent: "my husband who hits me" is a disclosure, "anyone who hurt me" is not.
_RELATIVE_AGENT = re.compile(
    r"\b(?:(?:anyone|anybody|someone|somebody|people|(?:a|an|some|any|this|that|these|those) \w+(?: \w+)?) (?:who|that)|whoever)"
    r"\s+(?:\w+\s+){0,2}(?:" + _HARM_VERBS[3:-1] + "|" + _ABUSE_VERBS[3:-1] + r")\b")
#: Ego-dystonic intrusive thoughts (harm OCD): fear of one's own thought, no wish or plan.
_INTRUSIVE_FEAR = re.compile(r"\b(?:scared|afraid|terrified|frightened|worried|worry|panic\w*|horrified) (?:that )?i(?:'ll| will| might| could|'d| would| may)\b|"
                             r"\bintrusive\b|\bwhat if i\b|\b(?:googl\w*|checking|check) (?:whether|if) i(?:'m| am)\b")
_INTENT_STRICT = re.compile(r"\b(?:want to|wanted to|going to|gonna|plan(?:ning)? to|mean it|swear)\b")
_WHEN_TRIGGER = re.compile(r"\bwhen (?:he|she|they|my \w+) (?:sees?|finds? out|hears?|gets (?:home|back)|reads?)\b|"
                           r"\b(?:when|whenever|every time) (?:he|she|they) (?:does|do|says?|starts?|goes on|bangs on|talks?|chews|leaves)\b")
_WEAPON = re.compile(r"\b(?:knife|knives|gun|bat|weapon|hammer|blade|machete|axe)\b")


_FEARED_OTHER = re.compile(r"\b(?:scared|afraid|worried|frightened|terrified) (?:that )?(?:he|she|they)(?:'ll| will|'d| would| might|'s going to| is going to)\b")


#: "...but I'd never act on it": ideation with intent explicitly disavowed (moderate, not high).
_NO_INTENT = re.compile(
    r"\b(?:would(?:n't| not| never)|'d never|never|not going to|won't|wouldn't ever) (?:actually |really )?"
    r"(?:do it|do that|act on (?:it|them|that)|go through with it|do anything(?: about it)?)\b|"
    r"\bno (?:plan|plans|intention|intent)\b|\bnot (?:planning|going) to do anything\b|\bnot (?:like,? )?(?:doing|do|to do) anything\b|"
    r"\bmore (?:a|of a) \w+ than a plan\b|\bnot a plan\b",
    re.IGNORECASE,
)
_DISAVOWABLE = ("active ideation", "suicidal ideation", "wish to die", "wish to be dead")
#: Harm to others becomes high with a named target AND intent, plan or means.
_INTENT = re.compile(
    r"\b(?:going to|gonna|will|i'll|plan(?:ning)? to|mean it|swear|when i see|next time i see|waiting for|"
    r"know where (?:he|she|they) (?:lives?|works?)|knife|gun|bat|weapon)\b",
    re.IGNORECASE,
)
_NAMED_TARGET = re.compile(rf"\b(?:him|her|my {_FAMILY}|(?:his|her) (?:new )?(?:girlfriend|boyfriend|wife|husband|partner))\b")
#: Acting on self-harm right now (not urges, not fear of relapse).
_SH_URGE = re.compile(r"\b(?:urges?|scared|afraid|worried|tempted|want(?:ed|ing)? to|might|could|thought about|think about|thinking about)\b", re.IGNORECASE)


def calibrate_severity(pat: Pattern, norm: str, match_start: int = 0) -> tuple[Severity, str]:
    """Severity as clinical practice grades it (before the historical downgrade).

    High: current self-harm, suicidal intent/plan/means, harm to others with a named target
    and intent or means. Moderate: passive ideation, ideation with intent disavowed, urges.
    """
    sev, why = pat.severity, pat.label
    if pat.category is SH:
        # urges, or the bare word ("the self-harm is different"): no act is described
        if "urge" in pat.label or pat.generic or _SH_URGE.search(_clause_prefix(norm, match_start)):
            return MO, pat.label
        return HI, f"current self-harm ({pat.label})"
    if pat.category is SI and pat.label in ("wish to die", "wish to be dead") and not _PLAN_MEANS_STRICT.search(norm):
        sev, why = MO, f"passive ideation ({pat.label})"
    if pat.category is SI and sev is HI and pat.label in _DISAVOWABLE and _NO_INTENT.search(norm):
        return MO, f"{pat.label}, intent disavowed"
    if pat.category is HO and sev is MO and _INTENT.search(norm) and _NAMED_TARGET.search(norm):
        return HI, f"{pat.label} with a named target and intent/means"
    return sev, why


_PLAN_MEANS_STRICT = re.compile(
    r"\b(?:plan|planned|planning|tonight|tomorrow|this weekend|pills|tablets|overdose|rope|noose|gun|bridge|"
    r"stockpil\w*|saved up|note|letters?)\b",
    re.IGNORECASE,
)


def _scan_sentence(text: str) -> list[tuple[Pattern, Severity, str]]:
    """All (pattern, severity, rationale) hits of one sentence after the context rules."""
    return _scan_sentence_ex(text)[0]


def _scan_sentence_ex(text: str, family_session: bool = False) -> tuple[list[tuple[Pattern, Severity, str]], bool]:
    """Hits of one sentence, plus whether a pattern matched but a guard suppressed it.

    ``family_session``: several clients in the room (see ``_own_experience``)."""
    norm = normalize(text)
    idiom = bool(_IDIOM.search(norm))
    if idiom:  # blank the idiom out ("my feet are killing me"), keep the rest of the sentence
        norm = _IDIOM.sub(lambda m: "-" * len(m.group(0)), norm)
    if _HYPOTHETICAL.search(norm) or _SCREENING_QUESTION.search(norm):
        return [], any(p.regex.search(norm) for p in PATTERNS)
    historical = _is_historical(norm)
    hits = []
    suppressed = False
    for pat in PATTERNS:
        if pat.multi_client_only and not family_session:
            continue
        for m in pat.regex.finditer(norm):
            if pat.negatable and _is_negated(norm, m):
                suppressed = True
                continue
            if pat.generic and not _generic_applies(norm, m):
                suppressed = True
                continue
            if pat.category is HO and (_ANNOYANCE_IDIOM.match(norm[m.end():]) or (_TRIVIAL_TRIGGER.search(norm)
                                                                                and not _HARM_CONDITION.search(norm))):
                suppressed = True
                continue
            if (not pat.third_party_ok and not _own_experience(norm, m, pat.category, family_session)) or _benign_context(pat, norm, m):
                suppressed = True
                continue
            if historical and pat.label == "abuse of a family member":
                # "My dad used to hit my mum when I was a kid": someone else's past, not a current risk
                suppressed = True
                continue
            severity, why = calibrate_severity(pat, norm, m.start())
            if historical and pat.historical_ok:
                # Resolved past risk, including a past attempt: low, marked past (the history
                # is kept in the flag's quotes; a current disclosure is a separate episode).
                severity = LO
                why = f"historical: {pat.label}"
            hits.append((pat, severity, why))
            break
    return hits, suppressed or idiom


def _is_historical(norm: str) -> bool:
    return bool(_HISTORICAL.search(norm)) and not _CURRENT.search(norm)


def _scanned(segments: list[MergedSegment]) -> list[int]:
    """Indices of segments to scan: everything not spoken by the therapist."""
    return [i for i, s in enumerate(segments) if (s.role or "").upper() != "THERAPIST"]


#: "The lexicon also sees plan/intent/means": lifts a semantic-only SI / harm-to-others flag to high.
_PLAN_MEANS = re.compile(
    r"\b(?:plan|plans|planned|planning|decided|ready|tonight|tomorrow|this weekend|goodbye|note|letters?|"
    r"pills|tablets|overdose|rope|noose|gun|knife|blade|razor|bridge|jump|hang|stockpil\w*|saved up|"
    r"going to|gonna|will)\b",
    re.IGNORECASE,
)
_PLAN_LABELS = ("plan", "intent", "means", "method", "attempt", "preparatory", "threat", "stockpiling")
_SEMANTIC_HIGH_OK = {SI, HO}
_ME_OBJECT = re.compile(r"\b(?:me|us)\b", re.IGNORECASE)
_I_SUBJECT = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|we)\b", re.IGNORECASE)


def _semantic_guard(norm: str, suppressed: bool) -> str:
    """How strongly the lexicon's guards doubt this sentence ("" / "guarded" / "suppressed").

    "suppressed": a pattern matched and was then discarded as negated, hypothetical,
    idiomatic or not the speaker's own experience. "guarded": the sentence carries a
    negation, hypothetical, education/media or third-party cue. The semantic layer then
    needs a larger lead over the negative prototypes before it may flag.
    """
    if suppressed:
        return "suppressed"
    if (_HYPOTHETICAL.search(norm) or _EDUCATION.search(norm) or _NEGATION.search(norm)
            or (_THIRD_PARTY_SUBJECT.search(norm) and not _FIRST_PERSON.search(norm))):
        return "guarded"
    return ""


#: Means access, plan details, a target's whereabouts: alarming inside an episode of their
#: category (they make it high), meaningless alone ("my dad keeps a rifle for hunting").
CONTEXT_PATTERNS: tuple[Pattern, ...] = (
    _p(SI, r"\b(?:there's|there is|we have|we've got|i have|i've got|i got|he keeps|dad keeps|keeps|kept|still has|has)\b[^.]{0,30}\b(?:guns?|rifles?|shotguns?|pistols?|firearms?|handguns?|revolvers?|glock)\b|"
       r"\b(?:my|the|his|dad's) (?:gun|rifle|shotgun|pistol|handgun|revolver|glock|firearm)\b[^.]{0,40}\b(?:safe|cabinet|drawer|garage|closet|wardrobe|loft|locked|loaded)\b|"
       r"\b(?:it's|it is|they're|they are) (?:in|under) (?:the|my) (?:gun )?(?:safe|cabinet|drawer|glovebox|closet)\b", HI, "means access: firearm"),
    _p(SI, r"\b(?:pills|tablets|meds|medication|paracetamol|painkillers|insulin)\b[^.]{0,35}\b(?:drawer|cabinet|cupboard|bag|bedside|saved|put aside|kept|hidden|hid|enough)\b", HI, "means access: medication"),
    _p(SI, r"\b(?:saved|saving|kept|keeping|hidden|hiding|hid|put aside|collected|collecting|counted) (?:up )?(?:some|a few|enough|them|a lot)\b", HI, "means access: stockpiling"),
    _p(SI, r"\b(?:papers|affairs) in order\b|\bso nobody has to (?:do it|sort it|deal with it)\b|\bwill(?:'s| is) sorted\b|\bone (?:letter )?for each of them\b|"
       # "went to the solicitor and did the will" (round 12)
       r"\b(?:did|made|wrote|updated|changed|redid|sorted(?: out)?) (?:my|the|a|me) will\b", HI, "preparatory behaviour"),
    # Loading a gun while ideating is a rehearsal ("put two cartridges in it and sat on the wall"), round 12.
    _p(SI, r"\b(?:put|loaded|load|slid) (?:\w+ )?(?:cartridges?|bullets?|shells?|rounds?) (?:in|into)\b|\bloaded (?:the|my|his|dad's) (?:gun|rifle|shotgun|pistol)\b", HI, "rehearsal / method"),
    _p(SI, r"\b(?:went|go|been going|drove|walked|stood|standing|looked down) (?:up )?(?:to|on|at|from|over|by) (?:the )?(?:bridge|top of the car park|cliffs?|edge|tracks|railway|roof|railings?|ledge)\b", HI, "rehearsal / method"),
    _p(SI, r"\b(?:i know|i've worked out|i've figured out|i worked out|i've decided) (?:where|how|when|what i'd use)\b|\b(?:i've|i have) (?:decided|picked) (?:a|the) (?:day|date|time|place)\b", HI, "plan"),
    _p(SI, r"\b(?:tonight|this weekend|after the (?:kids|funeral|wedding|holidays)|when (?:everyone|they)(?:'s| is| are)? (?:asleep|away|out))\b", HI, "intent: timing"),
    _p(AV, r"\b(?:bruis\w*|black eye|bled|bleeding|stitches|split lip|concussion|a ?& ?e|marks on my)\b", MO, "injury"),
    _p(HO, r"\bknow where (?:he|she|they) (?:lives?|works?|parks?|drinks?|goes|sleeps|stays)\b|\b(?:wait|waiting|waited) for (?:him|her|them) (?:outside|after)\b|"
       r"\b(?:wait|waiting|waited) (?:by|at|outside) (?:the|his|her|their) (?:gate|door|house|flat|car|work|school)\b|"
       r"\b(?:found|find|looked up|worked out|know) (?:out )?(?:his|her|their) (?:address|new address|schedule|shifts?|route)\b|"
       r"\b(?:i'll|i will|i'm going to|i'm gonna|gonna) (?:just )?(?:wait for|go after|get|sort|deal with|find|pay (?:him|her|them) a visit) (?:him|her|them)\b(?! (?:a|some|to|the|from|back|something))", HI, "plan: target's whereabouts"),
    _p(HO, r"\b(?:got|have|bought|keep|carry|carrying|took|brought|there's|kept) (?:a |my |the |an |my (?:dad's|brother's) )?(?:old )?(?:knife|blade|bat|baseball bat|slugger|louisville slugger|gun|weapon|hammer|crowbar|machete|axe)\b|"
       r"\b(?:knife|blade|bat|slugger|gun|hammer|crowbar|machete|axe)\b[^.]{0,20}\b(?:in|under) (?:the|my) (?:truck|car|van|bag|pocket|glovebox|seat|bed|mattress|pillow)\b|"
       # "wait by the gate with the machete" (round 8)
       r"\bwith (?:a|the|my) (?:knife|blade|bat|gun|hammer|crowbar|machete|axe|cutlass)\b|"
       # a prison-made weapon ("I've made a shank", "made something ... a blade off a razor"), round 12
       r"\b(?:made|make|making|got|have|carry|keep)\b[^.]{0,15}\b(?:shank|shiv|chiv)\b", HI, "means to harm others"),
    _p(HO, r"\b(?:watch|watching|watched|followed|following|follow|sat outside|sitting outside|parked outside|drove past|driving past) (?:his|her|their) (?:car|house|flat|place|work|office|home|building|street)\b", HI, "surveillance of a target"),
)

_AFFIRMATIVE = re.compile(
    r"^(?:(?:um|uh|erm|er|well|honestly|i mean|mm|mhm|hmm|ok|okay|so),? )*(?:yes|yeah|yep|yup|yea|sometimes|a bit|a little|"
    r"kind of|kinda|sort of|i have|i do|i did|i guess|maybe|occasionally|lately|recently|more than|every day|most days|"
    r"most nights|at times|once or twice|a few times|i'd had|i had|i've had|i've been|i have been|(?:it's|they've|it has|they have) crossed my mind|on and off|"
    r"on bad days|i think so|probably|a couple of times|more often|some|i've thought about it|i have thought about it|"
    r"i've thought about|it has crossed|it's crossed|it did cross|they have|they do|it has|it does|a few|more than)\b",
    re.IGNORECASE,
)
_DENIAL = re.compile(
    r"^(?:(?:um|uh|erm|er|well|honestly|i mean|mm|hmm|oh),? )*(?:no|nope|nah|not really|never|god no|i haven't|i don't|"
    r"i didn't|not at all|none|not since|not anymore|not any more)\b",
    re.IGNORECASE,
)
_SECOND_TO_FIRST = (
    (r"\byourself\b", "myself"), (r"\byou're\b", "i'm"), (r"\byou've\b", "i've"), (r"\byou'd\b", "i'd"),
    (r"\byou'll\b", "i'll"), (r"\byour\b", "my"), (r"\byou\b", "i"),
)


def _first_person(question: str) -> str:
    """A therapist's question turned into the client's own statement, for pattern matching."""
    text = normalize(question).rstrip(" ?") + "."
    for rx, repl in _SECOND_TO_FIRST:
        text = re.sub(rx, repl, text)
    return text


@dataclass(frozen=True)
class RiskConfig:
    """Episode rules. ``episode_gap_s``: mentions of one category closer than this belong to one
    episode (a therapist's follow-up question and the answer fit well inside it), and joining
    mentions (means access, sub-threshold semantic hits) must lie this close to an episode."""

    episode_gap_s: float = 90.0


@dataclass
class _Item:
    """One scanned sentence."""

    seg: MergedSegment
    sent: Sentence
    norm: str
    hits: list[tuple[Pattern, Severity, str]]
    suppressed: bool
    turn_past: bool = False  # the client's turn narrates the past ("when I got outed at school ...")


#: A sentence in the past tense with no present-tense verb: inside a turn that narrates the
#: past, it is part of that history ("I didn't want to be alive for a while.").
_PAST_TENSE = re.compile(r"\b(?:was|were|did|didn't|had|thought|felt|took|tried|got|went|used to|would|he'd|she'd|they'd|"
                         # a past beating in a turn that dates itself ("as a wean, in the fifties ... leathered us")
                         r"used|beat|leathered|belted|whipped|thrashed|battered|caned|punched|kicked|slapped)\b")
_PRESENT_TENSE = re.compile(r"\b(?:am|i'm|is|are|'s|'re|have been|i've been|keep|keeps|do|does|don't|can't)\b")


#: "That was thirty years ago.": the speaker's next turn dates what they just told.
_BACK_REFERENCE_PAST = re.compile(
    r"^(?:\W*(?:um|uh|and|but|well|oh|yeah|no)\W+)*(?:that|this|it|all that|all of that|all this)(?:'s| was| were| happened| is)\b[^.]{0,30}\b"
    r"(?:\w+ )?(?:years?|months?|decades?) (?:ago|back)\b", re.IGNORECASE)


def _continue_history(mentions: list[Mention]) -> list[Mention]:
    """``established_history``: once a speaker has told a category's risk as past history
    ("from when I was nine he used to knock me about ... it stopped when I was fourteen"),
    a later past-tense mention of that category with no present-time cue ("it's the one where
    he locked me in the coal shed") is more of that history, not a new current episode."""
    history: dict[tuple[RiskCategory, str | None], float] = {}
    out = []
    for m in sorted(mentions, key=lambda m: m.start):
        key = (m.category, m.quotes[0].speaker)
        norm = normalize(m.quotes[0].quote)
        if m.past and m.kind in OPENING_KINDS:
            history[key] = m.end
        elif (key in history and m.start - history[key] <= PAST_GAP_S and m.kind == "lexicon" and not _CURRENT.search(norm)
              and _PAST_VERB.search(norm) and not _CURRENT_HARM_CUE.search(norm) and _PRONOUN_SUBJECT.search(norm)):
            m = Mention(m.category, LO, True, f"{m.why}; established history", m.kind, m.quotes)
        out.append(m)
    return out


#: The person is one already spoken of ("he", "she"), not a new one ("my boyfriend").
_PRONOUN_SUBJECT = re.compile(r"\b(?:he|she|they|it)\b")
_PAST_VERB = re.compile(r"\b(?:\w+ed|was|were|did|had|took|got|went|made|hit|beat|threw|broke|told|said|left|kept|put|bit|held|ran|came|used to)\b")
_CURRENT_HARM_CUE = re.compile(r"\b(?:this (?:week|month|morning)|last (?:night|week|weekend)|yesterday|today|on (?:monday|tuesday|wednesday|"
                               r"thursday|friday|saturday|sunday)|again|still)\b")


def _dated_by_next_turn(segments: list[MergedSegment], i: int) -> bool:
    """The same speaker's next turn (within two turns) opens by dating the story as long past."""
    for j in range(i + 1, min(i + 3, len(segments))):
        if segments[j].speaker == segments[i].speaker:
            return bool(_BACK_REFERENCE_PAST.search(normalize(segments[j].text)))
    return False


#: "after the funeral I used again": "again" inside a past-tense clause does not make it current.
_PAST_AGAIN = re.compile(r"\b(?:used|drank|relapsed|started|picked up|went|did|was|were|got|had|took) (?:\w+ )?again\b")


def _item_past(it: "_Item") -> bool:
    if _is_historical(it.norm):
        return True
    norm = _PAST_AGAIN.sub("", it.norm)
    return it.turn_past and not _CURRENT.search(norm) and bool(_PAST_TENSE.search(it.norm) or _PAST_AGAIN.search(it.norm)) \
        and not _PRESENT_TENSE.search(norm)


def _weak_mentions(it: "_Item") -> list[Mention]:
    """Cues that count only in combination (see ``risk_rules.promote_weak``)."""
    if it.suppressed or _HYPOTHETICAL.search(it.norm):
        return []
    past = _item_past(it)
    return [Mention(cat, None, past, label, "weak", (_quote(it.seg, it.sent),)) for cat, label in weak_labels(it.norm)]


def _quote(seg: MergedSegment, sent: Sentence) -> RiskEvidence:
    return RiskEvidence(quote=sent.text, start=sent.start, end=sent.end, speaker=seg.speaker, role=seg.role)


def _lexicon_mentions(it: _Item) -> list[Mention]:
    best: dict[RiskCategory, tuple[Severity, list[str]]] = {}
    for pat, sev, why in it.hits:
        cur = best.get(pat.category)
        if cur is None:
            best[pat.category] = (sev, [why])
        else:
            top = sev if _SEV_RANK[sev] > _SEV_RANK[cur[0]] else cur[0]
            best[pat.category] = (top, cur[1] + ([why] if why not in cur[1] else []))
    if not _is_historical(it.norm) and _item_past(it):  # history told across the turn: resolved, low
        return [Mention(cat, LO, True, "historical (turn): " + "; ".join(whys), "lexicon", (_quote(it.seg, it.sent),))
                for cat, (_sev, whys) in best.items()]
    past = _is_historical(it.norm)
    return [Mention(cat, sev, past and all(w.startswith("historical") for w in whys), "lexicon: " + "; ".join(whys),
                    "lexicon", (_quote(it.seg, it.sent),)) for cat, (sev, whys) in best.items()]


def _context_mentions(it: _Item) -> list[Mention]:
    """Means/plan details: joining mentions, so never a flag on their own."""
    if it.suppressed or _HYPOTHETICAL.search(it.norm):
        return []
    past = _item_past(it)
    out = []
    for pat in CONTEXT_PATTERNS:
        m = pat.regex.search(it.norm)
        if m and not _is_negated(it.norm, m):
            out.append(Mention(pat.category, LO if past else pat.severity, past, pat.label, "context",
                               (_quote(it.seg, it.sent),)))
    return out


#: The opposite of ideation: "I want to be here.", "I want to see her grow up." (round 8).
_PROTECTIVE = re.compile(r"^(?:(?:and|but|so|because|i mean|honestly),? )*i (?:really |do |still |just )?(?:want|wanna|need) to "
                         r"(?:be here|live|be alive|stay alive|be around|see (?:him|her|them|my \w+) grow)\b", re.IGNORECASE)
#: Retold news: "On the news last night they were saying...", "I read in the paper that..." (round 8).
_NEWS_FRAME = re.compile(r"^(?:\w+,? )?(?:on|in) the (?:radio|news|telly|tv|paper|papers)\b|^i (?:read|saw|heard) (?:in|on) the\b", re.IGNORECASE)


def _not_a_disclosure(norm: str, cat: RiskCategory) -> bool:
    """Sentences the learned layers (semantic, classifier) may not open or corroborate an
    episode on: a protective statement read as ideation, retold news, or a sentence wholly
    about someone outside the room (a colleague, a roommate's cousin) with no first person."""
    norm = norm.strip()
    return bool((cat is SI and _PROTECTIVE.search(norm) and not _NEGATION.search(norm)) or _NEWS_FRAME.search(norm)
                or (_OUT_OF_ROOM.search(norm) and not _FIRST_PERSON.search(norm)))


def _semantic_mentions(it: _Item, sem: list[tuple[str, float]], config: "SemanticConfig | None") -> list[Mention]:
    """Semantic hits of categories the lexicon did not find in this sentence.

    At or above the category's solo threshold (calibrated on data the layer was not tuned
    on; higher when the sentence has a negation/hypothetical/third-party cue, infinite when
    its lexicon match was suppressed), a hit may open an episode (moderate; high only for
    ideation/harm to others with plan/means words); below it, it only corroborates.
    """
    lexicon_cats = {p.category for p, _s, _w in it.hits}
    guard = _semantic_guard(it.norm, it.suppressed)
    plan = bool(_PLAN_MEANS.search(it.norm))
    past = _is_historical(it.norm)
    out = []
    for cat_name, sim in sem:
        cat = RiskCategory(cat_name)
        if cat is HO and _ME_OBJECT.search(it.norm) and not _I_SUBJECT.search(it.norm):
            cat = AV  # "my husband choked me": the embedding sees violence, the grammar the victim
        if cat in lexicon_cats or _not_a_disclosure(it.norm, cat):
            continue
        quote = (_quote(it.seg, it.sent),)
        if config is not None and sim >= config.solo_threshold_for(cat_name, guard):
            sev = LO if past else (HI if plan and cat in _SEMANTIC_HIGH_OK else MO)
            out.append(Mention(cat, sev, past, f"semantic match (similarity {sim:.2f})", "semantic", quote))
        else:
            out.append(Mention(cat, None, past, f"semantic corroboration (similarity {sim:.2f})", "corroborating", quote))
    return out


def _screening_mentions(segments: list[MergedSegment]) -> list[Mention]:
    """Affirmative answers to the therapist's risk screening questions.

    "Have you had thoughts of ending your life?" / "Sometimes, yeah." is a disclosure that
    no client sentence states on its own: the question is matched as if the client had said
    it in the first person, together with the answer (so "years ago" makes it past, "but I'd
    never act on it" moderate). A denial ("No, never") flags nothing. The question itself
    is never a flag.
    """
    out: list[Mention] = []
    for i in range(len(segments) - 1):
        asker, answer = segments[i], segments[i + 1]
        if not _is_screening_turn(asker, answer):
            continue
        question = segment_sentences(segments, i)[-1]
        reply = _reply_opening(segment_sentences(segments, i + 1))
        reply_norm = normalize(reply.text)
        if not question.text.rstrip().endswith("?") or _DENIAL.match(reply_norm) or not _AFFIRMATIVE.match(reply_norm):
            continue
        # Only what the QUESTION asks about: "How does it feel to have said it?" / "A little
        # lighter ... when I said the not wake up thing" answers nothing about risk (the
        # earlier disclosure is flagged where it was made).
        asked = {p.category for p, _s, _w in _scan_sentence_ex(_first_person(question.text))[0]}
        cap = _alternatives_cap(question.text)
        # The whole answer: "Sometimes, yeah. ... But I'd never do anything" disavows intent.
        hits, _supp = _scan_sentence_ex(_first_person(question.text) + " " + answer.text)
        answer_hits: dict[RiskCategory, bool] = {}
        for sent in segment_sentences(segments, i + 1):
            for p, _s, _w in _scan_sentence_ex(sent.text)[0]:
                answer_hits[p.category] = True
        past = _is_historical(normalize(answer.text))
        cats: dict[RiskCategory, tuple[Severity, str]] = {}
        for pat, sev, why in hits:
            if pat.category not in asked:
                continue
            if pat.category not in cats or _SEV_RANK[sev] > _SEV_RANK[cats[pat.category][0]]:
                cats[pat.category] = (sev, why)
        for cat, (sev, why) in cats.items():
            if cat in cap and _SEV_RANK[cap[cat]] < _SEV_RANK[sev] and not answer_hits.get(cat):
                sev, why = cap[cat], f"{why}; the least severe of the alternatives asked"
            sev, why = _thoughts_without_plan(cat, sev, why, question.text, answer.text, bool(answer_hits.get(cat)))
            out.append(Mention(cat, sev, past, f"affirmative answer to a screening question ({why})", "screening",
                               (_quote(answer, reply), _quote(asker, question))))
    return out


#: The therapist's words for a risk topic, so a topic can frame the client's short replies.
#: Substance use and harm to others are left out: their short replies ("two glasses on a
#: Friday") are too often benign, and harm to others needs the client's own words.
_THERAPIST_TOPIC: dict[RiskCategory, re.Pattern[str]] = {
    SH: re.compile(r"\bself[- ]?harm\w*|\bcut(?:ting|s)?\b(?! down| back| off| out)|\bhurt(?:ing)? yourself\b|"
                   r"\bburn(?:ing|ed|t)? yourself\b|\bthe burns?\b|\bthe (?:burning|cutting|scratching|picking)\b|\burges? to (?:cut|hurt|harm|burn)\b|\bwhere on your body\b", re.IGNORECASE),
    SI: re.compile(r"\bsuicid\w*|\bkill(?:ing)? yourself\b|\bend(?:ing)? your (?:own )?life\b|\bwant(?:ing|ed)? to die\b|"
                   r"\bthoughts? (?:of|about) (?:death|dying|not being here|not waking up)\b|\bbetter off dead\b|"
                   r"\b(?:after )?you(?:'ve| have)? died\b|\bthe bridge\b|\bnot (?:wanting|want) to be alive\b", re.IGNORECASE),
    OT: re.compile(r"\b(?:hear(?:ing)?|the|any) voices\b|\bvoices (?:telling|saying|again)\b|\bhearing things\b|\bpurg\w*|\bmak(?:e|ing) yourself sick\b|\bfaint\w*|"
                   r"\bstop(?:ping|ped)? (?:the |your )?(?:tablets|meds|medication)\b", re.IGNORECASE),
    AV: re.compile(r"\b(?:hurt|hit|hits|hurts|hurting|hitting) you\b|\bsafe at home\b|\bscared of (?:him|her)\b", re.IGNORECASE),
    # "Have you thought about actually hurting Rick?": the therapist names the target.
    HO: re.compile(r"\b(?:thought|thoughts|thinking|urges?|plans?|intend\w*|going) (?:\w+ ){0,3}(?:hurt|hurting|harm|harming|kill|killing|attack|attacking|"
                   r"stab|stabbing|shoot|shooting|get(?:ting)? back at|go(?:ing)? after) (?!yourself\b)\w+", re.IGNORECASE),
}
#: A follow-up question that keeps the previous topic ("and have you acted on them?").
_FOLLOW_UP_QUESTION = re.compile(
    r"\b(?:it|that|them|they|this|those|the urges?|acted on|since|last time|how often|how many|where|when|what happened|"
    r"used|what stopped|body|anyone|anything else)\b", re.IGNORECASE)
#: Content that makes a short reply a disclosure rather than small talk.
_DISCLOSURE = re.compile(
    r"\b(?:did it|done it|again|twice|once|a few times|a couple of times|\d+ times|last night|yesterday|days ago|this week|"
    r"(?:on|last) (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|night|week|weekend)|"
    r"with (?:a|the|my|some) (?:razor|blade|knife|lighter|scissors|compass|(?:pencil )?sharpener|cigarette|belt|cord|rope|pills|tablets|glass)|"
    r"on my (?:arms?|legs?|thighs?|wrists?|forearms?|stomach|hips?)|every (?:night|day|morning)|most (?:nights|days)|"
    r"they (?:say|said|tell|told|keep)|he (?:did|does|hit|hits|grabbed|pushed)|she (?:did|does|hit|hits|grabbed|pushed)|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|bled|bleeding|blood|blistered|deeper|plasters?|stitches|"
    r"(?:a|the|my) (?:razor|blade|lighter|sharpener)|my (?:arms?|legs?|thighs?|wrists?|forearms?|stomach|hips?)|"
    r"(?:saving|saved|counted|kept|hidden|stockpiled) them|railing|\w+ weeks? ago|(?:weeks?|months?|days?) now|since the last time|"
    r"this month|(?:a|the) (?:knife|bat|gun|weapon|lighter)|watching (?:his|her|their)|where (?:he|she|they) (?:lives?|parks?|works?))\b",
    re.IGNORECASE,
)
_SH_ACT = re.compile(r"\b(?:did it|done it|i did|cut|burned|burnt|scratched|again)\b")
_TOPIC_DEFAULT_SEVERITY = {SH: HI, SI: MO, OT: MO, AV: MO, HO: MO}
#: A reply that makes a plan ("We'll be there Thursday.") is not a disclosure.
_FUTURE_PLAN = re.compile(r"^(?:(?:ok(?:ay)?|yes|yeah|sure|fine|right|so|and),?\s*)*(?:we'll|we will|i'll|i will|we're going to|we can|i can)\b",
                          re.IGNORECASE)
#: Therapist turns without topic words that still keep the topic ("Take your time.", "When was that?").
TOPIC_TURNS = 3


def _therapist_topics(text: str) -> set[RiskCategory]:
    return {cat for cat, rx in _THERAPIST_TOPIC.items() if rx.search(text)}


def _topic_mentions(segments: list[MergedSegment]) -> list[Mention]:
    """Short replies that disclose within the therapist's current risk topic.

    "Has there been any self-harm?" ... "And have you acted on the urges?" / "I did it again.
    Twice." states no risk word, but within the topic it is a disclosure. The topic is set
    by the therapist's risk words and kept through one follow-up question; a reply that
    starts with a denial, or has no disclosure content (a time, a method, "again"), is not
    one. Severity comes from the question and reply read together when they match a
    pattern, else a default per category (acting on self-harm: high).
    """
    out: list[Mention] = []
    topics: set[RiskCategory] = set()
    age = 0
    for i in range(len(segments) - 1):
        asker, answer = segments[i], segments[i + 1]
        if (asker.role or "").upper() != "THERAPIST":
            continue
        question = segment_sentences(segments, i)[-1]
        # The turn's own topic; else the last topic, kept through up to TOPIC_TURNS therapist
        # turns without topic words ("Take your time." / "When was that?") unless denied.
        topics, age = _next_topics(topics, age, asker.text, question.text)
        if not topics or (answer.role or "").upper() == "THERAPIST":
            continue
        out += _topic_reply_mentions(topics, asker, question, answer, segments, i + 1)
        if _DENIAL.match(normalize(answer.text)):
            topics = set()  # "No, not since the party": the follow-ups are about coping, not a disclosure
    return out


def _next_topics(topics: set[RiskCategory], age: int, turn: str, last: str) -> tuple[set[RiskCategory], int]:
    """The risk topic after a therapist turn. A question sets its own topic, keeps the last
    one if it is a follow-up ("When was that?"), else ends it ("How has work been?"). A turn
    that asks nothing ("Take your time.") keeps the topic for up to TOPIC_TURNS turns."""
    if last.rstrip().endswith("?"):
        own = _therapist_topics(last)
        if own:
            return own, 0
        # "When was that?", or an elliptical question ("And actions?", "How often?"): a follow-up
        follow_up = _FOLLOW_UP_QUESTION.search(last) or len(last.split()) <= 3
        return ((_therapist_topics(turn) | topics), 0) if follow_up else (set(), 0)
    own = _therapist_topics(turn)
    if own:
        return own, 0
    return (topics, age + 1) if age + 1 <= TOPIC_TURNS else (set(), 0)


def _topic_reply_mentions(topics: set[RiskCategory], asker: MergedSegment, question: Sentence,
                          answer: MergedSegment, segments: list[MergedSegment], answer_index: int) -> list[Mention]:
    replies = segment_sentences(segments, answer_index)[:6]
    if not replies or _DENIAL.match(normalize(_reply_opening(replies).text)):
        return []
    said = next((r for r in replies if _DISCLOSURE.search(normalize(r.text)) and not _FUTURE_PLAN.match(normalize(r.text))), None)
    if said is None or _HYPOTHETICAL.search(normalize(said.text)):
        return []
    hits, _supp = _scan_sentence_ex(_first_person(question.text) + " " + answer.text)
    past = _is_historical(normalize(" ".join(r.text for r in replies)))
    out = []
    for cat in topics:
        sevs = [sev for pat, sev, _w in hits if pat.category is cat]
        sev = max(sevs, key=lambda x: _SEV_RANK[x]) if sevs else _TOPIC_DEFAULT_SEVERITY[cat]
        own = any(p.category is cat for r in replies for p, _s, _w in _scan_sentence_ex(r.text)[0])
        sev, _why = _thoughts_without_plan(cat, sev, "", question.text, answer.text, own)
        if cat is SH and _SH_ACT.search(normalize(said.text)) and not past:
            sev = HI  # "Any urges?" / "I did it on Sunday.": an act, not an urge
        out.append(Mention(cat, LO if past and not sevs else sev, past, f"disclosure within the therapist's {cat.value} topic",
                           "screening", (_quote(answer, said), _quote(asker, question))))
    return out


#: Hesitation before the answer: "I. Yeah. Some." / "Um. Yes."
_FILLER_SENTENCE = re.compile(r"^\W*(?:i|um|uh|erm|er|well|so|hmm|mm|oh|honestly|i mean|i just|look|okay|ok|god)\W*$", re.IGNORECASE)


def _thoughts_without_plan(cat: RiskCategory, sev: Severity, why: str, question: str, answer: str,
                           answer_says_it: bool) -> tuple[Severity, str]:
    """"Have you had thoughts of killing yourself?" / "Some, yeah.": ideation without a stated
    plan, intent or means is moderate (plan or means told later join the episode and raise it)."""
    if (cat is SI and sev is HI and _THOUGHTS_OF.search(question) and not answer_says_it
            and not _PLAN_MEANS_STRICT.search(normalize(answer))):
        return MO, f"{why}; thoughts without a stated plan or means"
    return sev, why


_THOUGHTS_OF = re.compile(r"\b(?:thoughts?|thinking|think|thought|ideas?|feel(?:ing)? like|urges?|wish(?:ed|ing)?)\b", re.IGNORECASE)


def _alternatives_cap(question: str) -> dict[RiskCategory, Severity]:
    """"Any thoughts about not wanting to be alive, or about ending your life?": a yes answers
    at least the mildest alternative, so the question alone grades it at that one; the
    client's own words can still raise it."""
    parts = [x for x in re.split(r",? \bor\b ", question) if x.strip()]
    if len(parts) < 2:
        return {}
    per_part = [{p.category: sev for p, sev, _w in _scan_sentence_ex(_first_person(x))[0]} for x in parts]
    cap: dict[RiskCategory, Severity] = {}
    for part in per_part:
        for cat, sev in part.items():
            if cat not in cap or _SEV_RANK[sev] < _SEV_RANK[cap[cat]]:
                cap[cat] = sev
    return cap


def _reply_opening(sentences: list[Sentence]) -> Sentence:
    """The reply's first sentence, skipping filler fragments; if it is a bare "Yeah." the next
    sentence is appended to the check by the caller through the whole answer text."""
    for sent in sentences[:3]:
        if not _FILLER_SENTENCE.match(normalize(sent.text)):
            return sent
    return sentences[0]


def _is_screening_turn(asker: MergedSegment, answer: MergedSegment) -> bool:
    asker_role, answer_role = (asker.role or "").upper(), (answer.role or "").upper()
    if asker_role == "THERAPIST":
        return answer_role != "THERAPIST"
    return not asker_role and not answer_role and asker.speaker != answer.speaker


_CLASSIFIER_KIND = "classifier: "


def _veto_openers(mentions: list[Mention], segments: list[MergedSegment], preds: list["TurnPrediction"],
                       veto: float | None, lexicon_veto: float | None = None) -> list[Mention]:
    """Drop the rules' openers where the supervised layer reads no risk at all.

    A screening answer ("Monday's fine" after a risk question), a topic reply or a semantic
    match opens an episode on context or resemblance, not on what was said; those made most
    of the rules' false flags on blind sets they never saw. Such a mention is dropped when
    the classifier (which reads the therapist's question with the turn) gives its turn
    P(no risk) >= ``veto``. A lexicon match is dropped only at the stricter ``lexicon_veto``
    (round 10: a threat idiom or a retold fight the patterns took literally). Context
    mentions (means, timing) never open an episode and are never vetoed. None: off.
    """
    if veto is None and lexicon_veto is None:
        return mentions
    p_none = {p.turn: p.probs.get("none", 0.0) for p in preds}
    seg_index = {(s.start, s.end, s.speaker): i for i, s in enumerate(segments)}

    def turn_of(m: Mention) -> int | None:
        q = m.quotes[0]
        hit = [i for (a, b, _spk), i in seg_index.items() if a - 1e-6 <= q.start <= b + 1e-6]
        return hit[0] if len(hit) == 1 else next((i for i in hit if i in p_none), None)

    out = []
    for m in mentions:
        weak = m.kind == "screening" or (m.kind == "semantic" and not m.why.startswith("classifier"))
        limit = veto if weak else lexicon_veto if m.kind == "lexicon" else None
        t = turn_of(m) if limit is not None else None
        if t is not None and p_none.get(t, 0.0) >= limit:
            continue
        out.append(m)
    return out


#: The classifier may not open an episode alone on a turn shorter than this (round 8): on a
#: short answer it reads the therapist's question more than the answer, and on sets 7-8 (the
#: writers its weights never saw) such hits were false flags (0.59 -> 0.48 per session, recall
#: unchanged at 10 words; 14 words cost recall). The rules and the semantic layer still read them.
CLASSIFIER_MIN_WORDS = 10


def _classifier_mentions(clf: "RiskClassifier", segments: list[MergedSegment], items: list[_Item],
                         severity_mode: str, preds: list["TurnPrediction"] | None = None) -> list[Mention]:
    """The supervised layer's turn-level hits that may open an episode, each quoted on the
    turn's sentence that carries the category most (its line-block score).

    Vetoes (the rules stay authoritative where they are sure): no hit in a turn where the
    rules suppressed a pattern (a negated, hypothetical, idiomatic, third-party or media
    sentence: a rule-detected distractor); a category the lexicon found in the turn is the
    rules'. The hit needs ``threshold`` (``guarded_threshold`` when a sentence of the turn
    has a negation, hypothetical or third-party cue). Severity: its severity head (or the
    plan/means cue), low when past; see ``_rules_keep_severity`` for episodes the rules own.
    """
    from services.notes.risk_classifier import Turn

    turns = [Turn(s.speaker or "", (s.role or "").upper() == "THERAPIST", s.text) for s in segments]
    by_seg: dict[int, list[_Item]] = {}
    seg_index = {id(s): i for i, s in enumerate(segments)}
    for it in items:
        by_seg.setdefault(seg_index[id(it.seg)], []).append(it)
    out: list[Mention] = []
    for pred in (preds if preds is not None else clf.predict(turns)):
        its = [it for it in by_seg.get(pred.turn, []) if it.norm.strip()]
        if not its or any(it.suppressed for it in its):
            continue  # no sentence, or a rule-detected distractor in the turn: veto
        if len(segments[pred.turn].text.split()) < CLASSIFIER_MIN_WORDS:
            continue  # a short answer ("Never.", "Four in the morning."): its meaning is the question's
        guarded = any(_semantic_guard(it.norm, False) for it in its)
        lexicon_cats = {h.category for x in its for h, _s, _w in x.hits}
        for cat_name, p in pred.categories(clf.guarded_threshold if guarded else clf.threshold):
            cat = RiskCategory(cat_name)
            if cat in lexicon_cats:
                continue
            scores = clf.sentence_scores(cat_name, [it.sent.text for it in its])
            it = its[int(np.argmax(scores))]
            if _not_a_disclosure(it.norm, cat):
                continue
            past = _item_past(it) or pred.past >= 0.5
            if past:
                sev = LO
            elif severity_mode == "head":
                sev = Severity(max(pred.severity.items(), key=lambda kv: kv[1])[0])
            else:
                sev = HI if _PLAN_MEANS.search(it.norm) and cat in _SEMANTIC_HIGH_OK else MO
            out.append(Mention(cat, sev, past, f"classifier: p={p:.2f}", "semantic", (_quote(it.seg, it.sent),)))
    return out


def _rules_keep_severity(rule_mentions: list[Mention], clf_mentions: list[Mention], gap_s: float) -> list[Mention]:
    """Episodes the rules open are theirs (severity, temporal, quotes): a classifier hit within
    the episode gap of a rule mention of its category that opens an episode is dropped; the
    classifier only opens episodes where the rules have none (its hit then gathers the rules'
    joining mentions: means access, prototype corroboration)."""
    ruled = [m for m in rule_mentions if m.kind in OPENING_KINDS]
    return list(rule_mentions) + [m for m in clf_mentions if not any(
        r.category is m.category and abs(r.start - m.start) <= gap_s for r in ruled)]


class RiskDetector:
    """The safety net: lexicon patterns plus (optionally) the semantic prototype layer,
    merged into one flag per risk episode.

    ``semantic``: a ``risk_semantic.SemanticRiskModel`` (loads all-MiniLM-L6-v2 once; the
    service creates one detector per process and reuses it), ``None`` for lexicon only,
    or ``"auto"`` to create one lazily on first use and fall back to lexicon-only (with a
    warning) if the model cannot be loaded. ``config``: the episode rules.
    """

    def __init__(self, semantic: "SemanticRiskModel | None | str" = "auto", config: RiskConfig | None = None,
                 classifier: "RiskClassifier | None" = None, classifier_severity: str = "head"):
        self._semantic = semantic
        self._semantic_failed = False
        self.config = config or RiskConfig()
        #: ``risk_classifier.RiskClassifier`` (the supervised layer) or None (off).
        self.classifier = classifier
        self.classifier_severity = classifier_severity  # "head" (its severity head) | "rules" (plan/means cue, else moderate)

    @property
    def semantic(self) -> "SemanticRiskModel | None":
        if self._semantic == "auto":
            try:
                from services.notes.risk_semantic import SemanticRiskModel

                self._semantic = SemanticRiskModel()
            except Exception as exc:  # a missing model must never disable the lexicon
                log.warning("risk_semantic_unavailable_lexicon_only", error=type(exc).__name__)  # no message: may hold paths
                self._semantic = None
                self._semantic_failed = True
        return self._semantic  # type: ignore[return-value]

    def detect(self, segments: list[MergedSegment]) -> list[RiskFlag]:
        """One flag per risk episode over the client's speech (see ``risk_episodes``).

        Each flag's ``evidence``/``start``/``end`` is the episode's key (most severe) verbatim
        sentence, timed from its words; ``evidence_quotes`` holds every sentence of the
        episode. Sorted high severity first, then by time.
        """
        gap = self.config.episode_gap_s
        flags = episodes_to_flags(promote_convergent_plan(promote_weak(self.mentions(segments), gap), gap), gap)
        return sort_flags([calibrate_episode(f, _span_text(f, segments)) for f in flags])

    def mentions(self, segments: list[MergedSegment]) -> list[Mention]:
        """Every sentence-level finding, before episodes are formed."""
        items = []
        scanned = _scanned(segments)
        turn_past = {i: bool(_HISTORICAL.search(normalize(segments[i].text))) or _dated_by_next_turn(segments, i) for i in scanned}
        family_session = len({segments[i].speaker for i in scanned}) > 1 and any(s.role for s in segments)
        for i in scanned:
            for sent in segment_sentences(segments, i):
                hits, suppressed = _scan_sentence_ex(sent.text, family_session)
                items.append(_Item(segments[i], sent, normalize(sent.text), hits, suppressed, turn_past[i]))
        semantic = self._semantic_hits(items)
        config = self.semantic.config if self.semantic is not None else None
        out = _screening_mentions(segments) + _topic_mentions(segments)
        for it, sem in zip(items, semantic):
            out += _lexicon_mentions(it) + _context_mentions(it) + _semantic_mentions(it, sem, config) + _weak_mentions(it)
        if self.classifier is not None:
            from services.notes.risk_classifier import Turn

            preds = self.classifier.predict([Turn(s.speaker or "", (s.role or "").upper() == "THERAPIST", s.text) for s in segments])
            clf_mentions = _classifier_mentions(self.classifier, segments, items, self.classifier_severity, preds)
            out = _veto_openers(out, segments, preds, self.classifier.weak_veto, self.classifier.lexicon_veto)
            out = _rules_keep_severity(out, clf_mentions, self.config.episode_gap_s)
        return _continue_history([r for r in (route_mention(m) for m in out) if r is not None])

    def _semantic_hits(self, items: list[_Item]) -> list[list[tuple[str, float]]]:
        hits: list[list[tuple[str, float]]] = [[] for _ in items]
        model = self.semantic
        if model is None or not items:
            return hits
        idx = [j for j, it in enumerate(items) if len(it.norm.split()) >= model.config.min_words]
        scores = model.score([items[j].sent.text for j in idx])  # one batched encode call
        for j, sc in zip(idx, scores):
            hits[j] = model.decide(sc, _semantic_guard(items[j].norm, items[j].suppressed))
        return hits


# The lexicon alone is stateless and cheap: the fallback when no detector is injected.
LEXICON_ONLY = RiskDetector(semantic=None)


def _span_text(flag: RiskFlag, segments: list[MergedSegment]) -> str:
    """What the clients said inside the episode's span (the episode rules' wider reading)."""
    start = flag.episode_start if flag.episode_start is not None else flag.start
    end = flag.episode_end if flag.episode_end is not None else (flag.end if flag.end is not None else start)
    return " ".join(s.text for s in segments if (s.role or "").upper() != "THERAPIST" and s.start <= end and s.end >= start)


def detect_risk(segments: list[MergedSegment], detector: RiskDetector | None = None) -> list[RiskFlag]:
    """Risk flags (one per episode) with the injected detector (the service builds one per
    process with the semantic layer loaded at start-up); without one, the lexicon alone."""
    return (detector or LEXICON_ONLY).detect(segments)


def _same_text(a: str, b: str) -> bool:
    ea, eb = normalize(a), normalize(b)
    return bool(ea and eb and (ea in eb or eb in ea))


def merge_flags(lexicon_flags: list[RiskFlag], llm_flags: list[RiskFlag], slack_s: float = 2.0) -> list[RiskFlag]:
    """Merge the safety net's episode flags with an LLM's flags.

    An LLM flag of the same category whose time overlaps an episode (or whose evidence is
    one of its quotes) is absorbed: source=both, the higher severity, its quote added.
    Every safety-net flag survives and is never made less severe: the LLM can add flags
    and evidence, never remove or soften the safety net's. LLM flags with no counterpart
    are kept (after grounding), with the episode fields filled in.
    """
    merged: list[RiskFlag] = []
    used: set[int] = set()
    for net in lexicon_flags:
        current = net
        for j, other in enumerate(llm_flags):
            if j not in used and same_episode(net, other, slack_s, _same_text):
                used.add(j)
                current = absorb(current, other)
        merged.append(current)
    merged += [as_episode(f) for j, f in enumerate(llm_flags) if j not in used]
    return sort_flags(merged)
