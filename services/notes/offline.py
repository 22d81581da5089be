"""Offline notes backend: deterministic, extractive, no model and no network.

Why: the pipeline must produce useful notes on a fresh machine without an API key, and a
clinician must be able to trust that nothing in them was invented. So this backend only
*selects* and *labels*: topics from a curated therapy lexicon matched against the words
actually spoken, quotes that are verbatim client sentences with times from the word
timings, homework found in the therapist's assignment language, strategies from a
technique lexicon, mood from a sentiment lexicon over the client's speech in time thirds.
Summaries are templates filled only with what was extracted, and say plainly that they
were generated offline. The same input always gives the same output.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.notes.grounding import Sentence, normalize, segment_sentences, tokens
from services.notes.risk import RiskDetector, detect_risk
from shared.contracts.events import MergedSegment, SpeakerInfo
from shared.contracts.notes import (
    ActionItem,
    ClinicalNotes,
    MoodTrajectory,
    SessionMood,
    SignificantQuote,
    Strategy,
)

if TYPE_CHECKING:
    from services.notes.intervention_classifier import InterventionClassifier

OFFLINE_LABEL = "Generated offline (extractive); review before use."

# --- lexicons --------------------------------------------------------------------------
TOPICS: dict[str, str] = {
    "work stress": r"\b(?:work|job|boss|manager|deadlines?|office|shifts?|colleagues?|overtime|workload|career|promotion|fired|redundan\w*)\b",
    "sleep": r"\b(?:sleep\w*|insomnia|awake|wake|waking|woke|tired|exhausted|nightmares?|bed ?time|naps?)\b",
    "family": r"\b(?:mum|mom|mother|dad|father|parents?|sisters?|brothers?|family|kids|children|son|daughter|grandm\w+|grandf\w+)\b",
    "relationships": r"\b(?:partner|husband|wife|boyfriend|girlfriend|relationship|marriage|divorce|breakup|break-up|dating|ex)\b",
    "anxiety": r"\b(?:anxious|anxiety|panic\w*|worr\w+|nervous|on edge|racing|dread)\b",
    "depression and low mood": r"\b(?:depress\w*|low mood|(?:feel\w*|been|so|really) (?:low|down)|sad|sadness|empty|numb|hopeless|crying|cried)\b",
    "self-esteem": r"\b(?:worthless|failure|not good enough|useless|stupid|confidence|self-esteem|ashamed)\b",
    "grief and loss": r"\b(?:died|passed away|death|funeral|grie\w+|loss|lost my|bereave\w*)\b",
    "anger": r"\b(?:angry|anger|furious|rage|irritable|snapped|resent\w*)\b",
    "substance use": r"\b(?:drink\w*|alcohol|wine|beers?|drugs?|weed|cannabis|cocaine|smok\w+|sober|relaps\w+)\b",
    "health": r"\b(?:doctor|GP|medication|meds|pain|illness|diagnos\w+|hospital|appointments?|symptoms?)\b",
    "finances": r"\b(?:money|debt|bills?|rent|mortgage|afford|finances|financial|loan)\b",
    "social life and isolation": r"\b(?:friends?|lonely|loneliness|isolated|alone|social\w*|going out)\b",
    "school and study": r"\b(?:school|exams?|university|college|studying|study|grades|assignments?|teacher)\b",
    "trauma": r"\b(?:trauma\w*|abuse\w*|assault\w*|flashbacks?|ptsd)\b",
    "eating and body image": r"\b(?:eating|appetite|weight|body image|binge\w*|diet\w*)\b",
}
_TOPIC_RX = {k: re.compile(v, re.IGNORECASE) for k, v in TOPICS.items()}

STRATEGIES: list[tuple[str, str, str]] = [
    ("breathing exercises", "breathing", r"\b(?:breathing|breaths?|box breathing|4-7-8|diaphragmatic)\b"),
    ("grounding", "mindfulness", r"\b(?:grounding|5-4-3-2-1|five things you can see|feel your feet on the floor|notice (?:five|5|three|3) things)\b"),
    ("journaling", "behavioral", r"\b(?:journal\w*|diar(?:y|ies)(?! cards?)|write (?:it|them|things) down|writing (?:it|things) down)\b"),
    ("thought records / cognitive restructuring", "cognitive", r"\b(?:thought records?|cognitive restructuring|challenge (?:that|the|those) thoughts?|reframe\w*|evidence for and against|thinking traps?|catastrophi\w+|what(?:'s| is) the evidence|evidence (?:for|against) (?:that|it|the)|another way (?:of looking|to look|to see|of seeing)|balanced (?:thought|view)|what would you say to a friend|thinking (?:error|trap)s?|all[- ]or[- ]nothing|mind[- ]reading|fortune[- ]telling|how (?:true|much do you believe)|alternative (?:thought|explanation)|(?:depression|anxiety|ocd|the illness|shame|your mind) (?:tells|is telling) you|thought[- ]action fusion|(?:is|was) (?:that|it) (?:true|really true|a fact)|what (?:actually|really) happened|do you (?:recognise|recognize|notice) (?:that|this|the) (?:thought|pattern|idea)|(?:having|a) (?:thought|thoughts) (?:is|are) (?:not|n't) (?:the same as|as bad as)|(?:the|that) (?:thought|belief) that|(?:predict|prediction)\w*|(?:was|is) what took|you did what (?:a|any)|look at (?:it|that) (?:differently|another way)|was (?:it|that) (?:about you|your fault))\b"),
    ("mindfulness", "mindfulness", r"\b(?:mindful\w*|meditat\w+|body scan)\b"),
    ("behavioral activation", "behavioral", r"\b(?:behaviou?ral activation|activity schedul\w+|pleasant activit\w+|schedule (?:something|one thing|an activity|in)|mastery|plan (?:one|a few|some|two) (?:small )?(?:things|activities)|wait (?:until|till) (?:we|you) feel like|(?:used to )?give you (?:a bit of |some )?(?:satisfaction|pleasure|enjoyment)|action (?:before|comes before) motivation|(?:small|one) thing,? (?:small,? )?that (?:used to|you))\b"),
    ("sleep hygiene", "behavioral", r"\b(?:sleep hygiene|screens? (?:off|before bed|out of the bedroom)|same time every (?:night|morning|day)|wind[- ]down routine|caffeine after|get out of bed if|bed (?:is )?(?:just )?for sleep|sleep (?:window|restriction)|no (?:screens|phones?|coffee|caffeine) (?:after|before|in)|dark room|sleep routine|(?:phone|screens?) (?:can )?(?:stays?|stay|charges?|go) (?:in the kitchen|downstairs|out of the bedroom)|get(?:ting)? up (?:after|if)|(?:rule|twenty[- ]minutes?) (?:rule|out of bed)|body clock)\b"),
    ("exposure", "behavioral", r"\b(?:exposure|fear ladder|hierarchy of|ladder of (?:steps|situations|fears)|stay (?:on|in|with it|there) until (?:it|the anxiety|the panic|the fear) (?:starts to )?(?:drops?|comes? down|pass(?:es)?|settles?)|gradually face|stay in the situation|let the anxiety (?:peak|come down|drop|settle)|without (?:the |your )?safety behaviou?rs?|response prevention|(?:rises|goes up),? peaks,? and (?:comes|goes) down|instead of escaping|(?:stay|staying) with (?:it|the anxiety|the fear)|(?:face|facing) (?:it|the fear|the situation) (?:gradually|step by step)|(?:without|drop) (?:the )?(?:avoidance|checking|reassurance))\b"),
    ("progressive muscle relaxation", "breathing", r"\b(?:progressive muscle relaxation|muscle relaxation|tense and release)\b"),
    ("problem solving", "cognitive", r"\b(?:problem[- ]solving|let'?s think about (?:ways|how|what)|(?:safer|other|different) ways to|break (?:it|that|this|the problem) (?:down|into)|pros and cons|brainstorm\w*|what are (?:your|the|our) options|list (?:the|your|some) options|smallest (?:first )?step|(?:what|which) (?:could|might|would) (?:help|work)|how (?:could|might|would) (?:you|we) (?:handle|manage|deal with|solve)|(?:family|house|household) (?:agreement|rules?)|(?:a|short) planning (?:chat|session|meeting)|divide (?:the|up)|options? (?:are|would be)|(?:something|one thing) to try|(?:what|how) (?:would|could) (?:that|it) look like|try (?:three|two|a few|some|one) (?:small )?\w+|holds? (?:your|the) (?:cards|keys|money)|(?:if|when) (?:it|that) (?:happens|goes wrong|goes well))\b"),
    ("boundary setting", "interpersonal", r"\b(?:boundar(?:y|ies)|saying no|say no|assertive\w*)\b"),
    ("safety planning", "safety", r"\b(?:safety plan\w*|what (?:to|you(?:'ll| will| could| can)|we) do (?:if|when)|crisis (?:line|number|team)|call 988|samaritans|reasons? for living|make (?:the|your) (?:house|home|flat) safer|(?:lock|locked) (?:them |it )?(?:away|up)|who (?:could|can|would) you (?:call|ring|text|contact)|coping (?:list|card|plan)|(?:home treatment|crisis|duty) team|(?:referral|refer\w*) to (?:children's )?(?:social (?:care|services)|safeguarding)|safeguarding|a ?& ?e|emergency department|tell someone|keep (?:you|yourself|everyone|the children|them) safe|your safety|(?:hand|give) (?:over )?(?:the )?(?:keys|tablets|pills|medication)|(?:take|bring) (?:the |your )?(?:tablets|pills|medication) (?:to|back)|stay with (?:someone|you|him|her|them) tonight|where would you keep it|in (?:our|the|your) (?:safety )?plan)\b"),
    ("self-compassion", "cognitive", r"\b(?:self-compassion|kinder to yourself|be kind to yourself)\b"),
    ("physical activity", "behavioral", r"(?<!breathing )(?<!relaxation )\b(?:exercise|walks?|walking|running|a run|gym|yoga)\b"),
    ("psychoeducation", "psychoeducation", r"\b(?:it(?:'s| is) (?:really |very |incredibly )?(?:common|normal|natural) (?:to|for|that|when)|fight[- ]or[- ]flight|(?:this|that|it)(?:'s| is) called\b|let me explain|the way (?:anxiety|panic|depression|trauma|the brain|alcohol|grief|ocd|mania) works|your (?:brain|body|nervous system) (?:is|does|thinks|reacts)|a (?:common|normal|natural) (?:response|reaction|symptom|part)|what (?:we know|research shows)|(?:is|are) a symptom of|the cycle (?:of|where)|can i (?:explain|share|tell you)|(?:share|give you|go through) (?:a bit of |some )?(?:information|facts)|what (?:happens|is happening|goes on) in (?:the|your) (?:brain|body)|(?:a|this is a|it's a) (?:pattern|cycle) (?:we see|that|where)|(?:a |really |very )?common (?:experience|reaction|response) (?:after|in|with|for|when)|(?:comes?|come) in waves|(?:isn't|is not|it's not) a straight line|what we call|(?:is|are) called|the (?:thinking|rational|logical) (?:part|brain)|(?:your|the) (?:brain|body|mind|nervous system) (?:is still|goes|might|can|keeps|learns|gets)|(?:is|are) (?:normal|common),? (?:they're|it's|and)|(?:tends?|tend) to (?:tell|make|keep)|how (?:it|this|that|anxiety|ocd|depression|grief|trauma|alcohol|withdrawal|mania|psychosis) works|(?:physically|becomes?|become) dependent|a sign (?:that )?your (?:body|brain|mind)|when we(?:'re| are) (?:like that|exhausted|sleep-deprived|anxious|stressed))\b"),
    ("validation", "interpersonal", r"\b(?:(?:that|it) makes (?:complete |total |a lot of |so much )?sense|of course you (?:feel|felt|would)|anyone would (?:feel|be)|(?:completely |totally )?understandable|it(?:'s| is) okay to (?:feel|be)|your (?:feelings?|reaction) (?:are|is) valid|no wonder you|makes (?:complete |total |a lot of |so much )?sense|it's not (?:mad|stupid|silly|weird|crazy|your fault)|(?:both|two) things can be (?:true|there)|i (?:can )?hear (?:that|how|you)|(?:that|it) (?:sounds|must be|must have been) (?:really |so |incredibly )?(?:hard|painful|exhausting|frightening|awful|difficult|lonely|scary)|you're not (?:disgusting|stupid|weak|a failure|broken|mad|a bad)|(?:what you're feeling|your feelings?) (?:is|are) (?:huge|real|understandable)|(?:is|was) (?:his|her|their) responsibility|i can see (?:how|that|why)|anyone in your (?:position|shoes))\b"),
    ("motivational interviewing", "motivational", r"\b(?:on a scale (?:of|from) (?:0|zero|nought|one|1) to (?:10|ten),? how (?:important|confident|ready|much do you want)|how (?:important|confident|ready) (?:is it|are you|do you feel)|what do you (?:get|like) (?:from|about) (?:drinking|using|gaming|it)|part of you (?:wants|that wants)|ambivalen\w+|the good things (?:about|and)|what would (?:need to|have to) (?:happen|change)|what do you (?:feel|notice) when you say that|how (?:does|did) it feel (?:to say|saying) that|what (?:would|will) (?:it|life|things) (?:look|be) like if|what matters (?:most )?to you|on the one hand|(?:importance|confidence) (?:ruler|scale)|where would you (?:put|rate) (?:yourself|it))\b"),
    ("communication skills", "interpersonal", r"\b(?:i[- ]statements?|time[- ]?outs?|active listening|reflect (?:back|that back)|(?:say|repeat) (?:back )?what you (?:heard|just heard)|speaker[- ]listener|without interrupting|soft start[- ]?up|tell (?:her|him|each other|your partner) (?:how|what) you (?:feel|need)|(?:turn|talk) to each other|instead of (?:describing|blaming|saying|telling|criticising)|try saying|(?:could|can) you tell (?:him|her|them|\w+) (?:what|how)|make it safe for (?:him|her|them|each other)|(?:rather than|instead of) \"?you (?:never|always)|(?:talk|speak) (?:directly )?to (?:him|her|each other)|(?:neither|none) of you is the (?:enemy|problem)|got in between you|what you need (?:instead|rather)|(?:i hear|you heard) (?:that )?\w+ (?:landed|felt))\b"),
    ("distress tolerance", "dbt", r"\b(?:distress tolerance|tipp\b|cold water on your face|take the edge off|(?:cold|icy|freezing) shower|squeez\w* ice|(?:hold|holding) (?:some )?ice|ice (?:cube|pack)s?|paced breathing|urge surfing|ride (?:out )?the (?:urge|wave)|self[- ]soothe|radical acceptance)\b"),
    ("relapse prevention", "relapse prevention", r"\b(?:relapse prevention|relapse (?:plan|signature)|early (?:warning )?signs|high[- ]risk (?:situations?|times?)|(?:if|when) you (?:slip|lapse)|a lapse (?:isn't|is not|doesn't)|(?:if|when) you (?:did|do) (?:slip|drink|use)|(?:exit|leave|escape) (?:plan|strategy)|triggers? (?:list|plan))\b"),
    ("chain analysis", "dbt", r"\b(?:chain analysis|links? in the chain|walk (?:me )?through (?:the chain|what happened (?:just )?before)|vulnerability factors?|prompting event|walk (?:me )?through (?:\w+day|it|that|what happened)|what happened (?:just |right )?before)\b"),
    ("opposite action", "dbt", r"\b(?:opposite action|do the opposite of what the (?:urge|emotion|feeling))\b"),
    ("DBT diary card", "dbt", r"\b(?:diary cards?|rated (?:every|each) day|rate (?:them|the urges|your urges) (?:every|each) day)\b"),
]
#: Techniques shown rather than named (issue 14): the generic shape of each move in a
#: therapist's sentence, not a session's wording. Same names as above; a name found by either
#: entry is one strategy.
STRATEGIES += [
    ("psychoeducation", "psychoeducation", (r"\b(?:(?:really|very|quite|so|incredibly|pretty) common|(?:many|lots of|most|a lot of|plenty of) (?:people|parents|couples|"
     r"families|kids|teenagers|children|survivors|veterans|new (?:mums|moms|parents|dads))\b|(?:is|are|can be) (?:a |one )?(?:symptoms?|signs?) (?:of|that)\b|"
     r"\ba symptom,? not\b|research (?:suggests|shows|tells us)|studies (?:show|suggest)|(?:often|usually|typically|tends? to) (?:happens?|works?|shows? up|"
     r"speaks? up|latch\w*|comes? back|gets? worse|feels?|makes?)\b|what (?:trauma|anxiety|depression|grief|ocd|panic|shame|alcohol|a \w+ response) "
     r"(?:does|do|memories do)\b|(?:the|your) (?:brain|body|nervous system|mind) (?:stores?|learns?|learned|reacted|reacts|flags?|fires?|tries|is trying|"
     r"starts?|responds?|slows?|filters?)\b|(?:grief|depression|anxiety|trauma|recovery|healing|withdrawal) (?:doesn't|does not|isn't|is not) (?:a |run|"
     r"follow|linear)|(?:that's|this is|it's) what (?:a|an|the) \w+ (?:\w+ )?does\b|(?:is|are) (?:a |an )?(?:illness|condition)\b|"
     # Naming and explaining a pattern: "that has a name", "what you're describing is...",
     # "one of the things that keeps it going", "it's treatable", "more common than people think".
     r"(?:has|there's|there is) a name\b|what you(?:'re| are|'ve been) describ\w+ (?:is|sounds like|can be|could be|are)\b|"
     r"keeps? (?:it|this|that|the \w+|\w+) going\b|(?:is|it's|are) (?:very |highly )?treatable\b|more common than (?:people|you|most)|"
     r"(?:can|may|might) be (?:early |warning |the first )?signs? (?:of|that)\b|(?:is|are) (?:usually|often|mostly) (?:a )?ways? (?:of|to)\b|"
     r"(?:fight|survival|threat) mode\b|(?:our|the|your) (?:body|brain|mind|nervous system) (?:stays|goes|is) on (?:high )?alert|"
     r"(?:can|does|will) (?:change|affect|alter) (?:how|the way) (?:the|your|our) (?:brain|body|mind)|puts? (?:a lot of |real |extra )?strain on|"
     r"tends? to (?:shrink|grow|build|feed|narrow|spiral|escalate|get|make|keep|come|go)\b|learns? that\b)")),
    ("validation", "interpersonal", (r"\b(?:what i'?m hearing|it sounds like (?:you|there|when|a|the|part)|sounds like (?:you|there's|a lot)|thank you for "
     r"(?:being (?:so )?honest|telling me|sharing|trusting me)|i'?m on your side|you'?re in charge of|i'?m taking (?:it|this|that) seriously|"
     r"(?:that|it) took (?:guts|courage)|(?:a|that's a) (?:brave|hard|big) thing to (?:say|share))\b")),
    ("motivational interviewing", "motivational", (r"\b(?:is that what you want|what would help you|what do you want (?:for|to)|what (?:are|would be) the "
     r"(?:good|not so good|downsides?|upsides?)|how (?:does|would) (?:that|this) fit with|what (?:worries|concerns) you (?:about|most)|"
     r"where does that leave you|(?:the )?good bits|what do you make of that|what would you (?:lose|gain)|(?:sounds like )?part of you|"
     r"what(?:'s| is) not so good|what do you (?:like|enjoy|get out of) (?:about )?(?:smoking|drinking|using|gambling|betting|gaming|it|that|them))\b")),
    ("problem solving", "cognitive", (r"\b(?:(?:a few|some|one|two|three) things? that (?:help|might help|can help|could help|often help)|ground rules|"
     r"what if we (?:set|made|tried|agreed|had)|write down (?:every|all|each)|divide (?:them|it|the \w+)|(?:owns?|owning) (?:it|each|the task|one)|"
     r"(?:option|plan) (?:a|b)\b|what gets in the way|smallest (?:possible )?(?:piece|step|bit|part)|(?:broke|broken|breaking) (?:it|that|this|them) "
     r"(?:down|into)|how about \w+ \w+ to start|to start with,? (?:how|what))\b")),
    ("safety planning", "safety", (r"\b(?:out of the house|intense but safe|put (?:them|it|those|the numbers?) in your phone|(?:lock|locking|locked) "
     r"(?:away|up|it|them)|lockbox|(?:give|giving|hand|handing) (?:it|them|the \w+) to (?:someone|a|your|me)|(?:warning|danger) signs?|"
     r"who (?:could|can|would|will) you (?:reach|go to|turn to)|(?:call|ring) (?:an ambulance|999|911|the crisis|a crisis)|"
     r"(?:put together|make|build|write|draw up) a plan for (?:the nights?|tonight|when|if|the weekend|those)|a plan for if|safe (?:person|place to go)|"
     r"(?:same[- ]day|urgent|emergency) (?:gp|doctor|appointment|review))\b")),
    ("thought records / cognitive restructuring", "cognitive", (r"\b(?:is it possible (?:that|the same|you|it)|the same (?:is|might be|could be) true for you|"
     r"(?:louder|bigger|stronger) than the (?:facts|evidence)|feelings? (?:aren't|are not|isn't|is not) facts?|would you say (?:that|the same) to|"
     r"(?:a|the) double standard|if (?:a|your) (?:friend|sister|brother|daughter|son) (?:said|told you|did)|(?:look|looking) at (?:the )?evidence|"
     r"what else (?:could|might) (?:explain|be going on))\b")),
    ("behavioral activation", "behavioral", (r"\b(?:(?:made|make|keep|keeping) (?:it|them) (?:really |very )?small|(?:really|very) small (?:step|thing|goal)|"
     r"just out the door|tiny (?:step|goal)|(?:small|achievable) goal|small,? doable|doable version|build (?:it|them|that) up (?:slowly|gradually)|"
     r"(?:go|stay|walk) for (?:ten|fifteen|twenty|thirty|\d+) minutes)\b")),
    ("sleep hygiene", "behavioral", (r"\b(?:before bed|lights (?:off|out) by|phones? in the kitchen|(?:get|getting|wake|waking) up at the same time|"
     r"wind[- ]down|in bed awake)\b")),
    ("communication skills", "interpersonal", (r"\b(?:in your own words|start with how (?:it|that) (?:affects|makes) you|putting (?:it|that) into words|"
     r"tell (?:him|her|them|\w+),? (?:directly|in your own words)|what you (?:imagine|think) it was like for (?:him|her|them)|(?:turn|speak) to (?:him|her) and|"
     r"one person talks at a time|take turns|say (?:it|that|this) to (?:him|her|them|\w+),? (?:rather than|instead of|not) (?:to )?me|"
     r"say back to (?:the other|each other|him|her|them))\b")),
    ("relapse prevention", "relapse prevention", (r"\b(?:red flags?|warning signs?|getting wobbly|slippery slope|(?:old|using) (?:haunts|places|mates|friends)|"
     r"cravings?)\b")),
    ("breathing exercises", "breathing", (r"\b(?:breathe (?:in|out)|in for (?:four|4|five|5)|out for (?:six|6|seven|7|eight|8))\b")),
    # Means restriction: putting distance between a person at risk and the means (guns, pills,
    # blades, ligatures, car keys). Named separately from safety planning because clinicians
    # record it as its own intervention; a sentence may count as both.
    ("means restriction", "safety", (r"\b(?:means (?:restriction|safety)|lethal means|lock ?box|gun (?:safe|cabinet|lock)|trigger lock|"
     r"(?:lock|locked|locking) (?:it|them|those|the \w+|your \w+) (?:away|up)|(?:lock|locked|locking) (?:away|up) (?:the|your|any|all)|"
     r"(?:hold|keep|look after|store|take|mind) (?:onto |on to )?(?:your|the|his|her|their|those|any|all (?:the|your)) ?(?:\w+ )?"
     r"(?:guns?|firearms?|rifles?|shotguns?|pistols?|ammunition|ammo|pills|tablets|medications?|meds|paracetamol|knives|blades?|razors?|"
     r"ropes?|belts?|straps?|car keys|keys|cabinet key)|(?:out of|away from|off) (?:the|your|his|her) (?:house|home|flat|truck|car|farm|room|bedroom)|"
     r"(?:leave|leaving|give|giving|hand|handing) (?:it|them|those|the \w+|your \w+) (?:over )?(?:with|to) (?:me|us|someone|a (?:friend|neighbour|neighbor)|your \w+)|"
     r"where (?:could|would|can) (?:it|they|the \w+|those) (?:go|be kept|live)|(?:dispose|get rid) of (?:the|any|your|those) (?:spare |old |extra )?"
     r"(?:pills|tablets|medication|meds|blades?|razors?)|(?:smaller|weekly|daily) (?:packs?|supplies|prescriptions?|dispensing)|blister packs?)\b")),
    ("relaxation", "breathing", (r"\b(?:relaxation|relax (?:your|the|each)|(?:let|drop) your shoulders|(?:slow|slower|longer) (?:out[- ])?breath|"
     r"breathe out (?:slowly|longer)|tense and release|unclench)\b")),
]
#: Interventions only the therapist can "use": a client saying "that makes sense" is not validation.
THERAPIST_ONLY = {"psychoeducation", "validation", "motivational interviewing", "communication skills",
                  "chain analysis", "problem solving", "thought records / cognitive restructuring", "safety planning",
                  "relapse prevention", "means restriction", "relaxation"}
#: Moves that are a technique only when the THERAPIST makes them, whatever the technique: a
#: client saying "I'm starting next Monday" schedules nothing (issue 14, round 7: the shapes
#: of proposals, referrals and explanations that sets 1-7 show but name nowhere).
THERAPIST_MOVES: list[tuple[str, str, str]] = [
    # Scheduling a concrete activity: "Could you go to the co-op three evenings this week?",
    # "would you try it, starting next Monday?", "let's try pacing".
    ("behavioral activation", "behavioral", (r"\b(?:(?:could|would|can|will) you (?:go|get|try|do|walk|join|visit|call|ring) .{0,50}?"
     r"(?:this week|(?:once|twice|\w+ (?:evenings?|mornings?|afternoons?|times|days)) (?:a|this|next) week)|starting (?:next |this |on )?"
     r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|weekend)|pacing|what if (?:\w+day|\w+ (?:morning|evening|night)) (?:was|were|is))\b")),
    # Linking to a resource or proposing a concrete fix: "Have you spoken to a financial
    # counsellor?", "Has anyone told you about the Disability Service?", "I can set up an
    # appointment with legal aid", "There are day care centres...", "What if we asked for...".
    ("problem solving", "cognitive", (r"\b(?:ha(?:ve|s) (?:you|anyone|anybody) (?:spoken|talked|told you|been) (?:to|about|in touch with) (?:a|an|the)\b|"
     r"i (?:can|could) (?:set up|book|arrange|make) (?:an?|the) (?:appointment|referral|call|meeting)|"
     r"there (?:are|is|'s) (?:a |an )?(?:\w+ ){0,3}(?:services?|cent(?:re|er)s?|groups?|programm?es?|clinics?|helplines?|counsellors?|counselors?) "
     r"(?:where|that|who|for|at|in|run)|what if,? (?:for|when|we|you|on)\b|would you (?:bring|take|raise) (?:it|that|this) (?:to|with))")),
    # Explaining a mechanism: "can look a lot like", "can be the start of a manic episode",
    # "That's what causes the cramps".
    ("psychoeducation", "psychoeducation", (r"\b(?:can (?:look|feel|sound) (?:a lot |a bit |very )?like|can be the (?:start|beginning|first sign) of|"
     r"(?:that's|that is|this is) what (?:causes|happens|drives|makes)|(?:your|the) nervous system)\b")),
    # Putting distance between a person and the means: "put time and distance between you and
    # them", "leave it here with me", "get it to the pharmacy", "Is the shed locked?".
    ("means restriction", "safety", (r"\b(?:(?:time and )?distance between (?:you|him|her|them) and|(?:leave|give|hand) (?:it|them|that|those) "
     r"(?:here )?with me|(?:to|at) the pharmacy|(?:is|are) the \w+ (?:locked|lockable)|(?:talk|do something) about (?:the|those|your) "
     r"(?:guns?|firearms?|pills|tablets|medications?|knife|knives|rifles?|weapons?))\b")),
    ("safety planning", "safety", (r"\b(?:let's (?:make|write|build) (?:a|the|your) plan|what could you do instead|who (?:else )?(?:you|we) (?:can|could) "
     r"(?:reach out to|call|ring|text)|(?:write|writing) down who)\b")),
    # Round 8 (sets 1-8): the mechanism explained in plain words ("the body loses potassium",
    # "the brain often grabs one detail", "it's a loop", "which is why it's hard to stop",
    # "a wiring difference, not laziness", "what we call hypomania", "let me share something about").
    ("psychoeducation", "psychoeducation", (r"\b(?:(?:the|your) (?:body|brain)(?:'s)? (?:\w+ )?(?:loses|salts|alarm|grabs|chases|stops|"
     r"switches|shifts|gets|needs|keeps|goes|can|does|often)|keeps? the brain|it's a (?:loop|cycle|vicious (?:circle|cycle))|"
     r"which is why (?:it|people|they|you|so)\b|(?:a|an) [\w -]{2,25}, not (?:a |an )?(?:sign|flaw|weakness|laziness|willpower|"
     r"character)|not a (?:willpower|character|moral) (?:problem|failing|flaw)|what we call\b|(?:i'?d like to|i want to|let me) "
     r"(?:explain|share something)|(?:very |really )?typical of\b|(?:children|kids|teenagers|teens|young people|people|couples|"
     r"families|parents) (?:often|usually|tend to|commonly) (?!say\b)\w+|(?:are|is) signs? (?:that )?the body)")),
    ("means restriction", "safety", (r"\b(?:(?:make|keep) (?:the |those |your |that )?(?:\w+ )?unavailable|(?:bring|hand|give) "
     r"(?:them|it|those|that) (?:to me|in)\b|keep (?:it|them) (?:for you|somewhere (?:safe|locked)|locked)|(?:back )?to the chemist)")),
    ("safety planning", "safety", (r"\b(?:what (?:you'd|you would|you'll|you will) do (?:first )?(?:if|when)|(?:make|write) a plan "
     r"(?:in case|for (?:if|when))|(?:if|in case) things get worse|put (?:that|this|the|those)(?: numbers?)? in your phone|"
     r"next time (?:the|it|you|that)\b[^.?]{0,40}?,? what (?:could|can|will|would) you|code ?word|agree a word|a word you "
     r"(?:could|can) (?:text|say|send|use)|can(?:'t|not) keep (?:that|this|it) (?:between us|to myself|confidential)|"
     r"(?:see|meet) each of you on your own|(?:pause|stop) (?:the )?joint sessions)")),
    ("problem solving", "cognitive", (r"\b(?:here's what i'?d suggest|i (?:want|'d like) to suggest a\b|could there be\b|"
     r"(?:could|can|shall) we (?:draft|write|plan|work out|figure out) (?:the|a|it|that|an?) ?\w* ?together|"
     r"what if (?:it's|it were|it was|there (?:was|were))|there's (?:the|an?) (?:\w+ ){0,2}(?:process|route|scheme|procedure))")),
    # Scaling and the other side of ambivalence: "What makes it a four and not a two?",
    # "Why six and not three?", "What does the other part of you want?".
    ("motivational interviewing", "motivational", (r"\b(?:(?:what makes it|why) (?:a |an )?\w+ and not (?:a |an )?\w+|"
     r"the other part of you|what would you (?:want|like) to be different)")),
    ("sleep hygiene", "behavioral", r"\b(?:blackout curtains|sleep block|same (?:bedtime|sleep time)|bedtime every)\b"),
    ("distress tolerance", "dbt", r"\b(?:(?:ice|something cold) in your hand|(?:face|hands?) in (?:a bowl of )?cold water)\b"),
    ("validation", "interpersonal", r"\b(?:any(?:one|body) would be|of course you(?:'re| are) (?:\w+ )?(?:exhausted|tired|angry|upset|scared|worried|hurt))\b"),
    ("communication skills", "interpersonal", (r"\b(?:(?:tell|say) (?:him|her|them|it|that) (?:that |this |it )?directly|each of you tell the other|"
     r"start with i feel|the other (?:one )?(?:just )?listens)\b")),
    ("thought records / cognitive restructuring", "cognitive", (r"\b(?:look at (?:that|this|the) (?:belief|rule|thought|idea)|"
     r"where did you learn (?:that|this))\b")),
    # Round 9 (sets 1-12): moves named in no earlier round.
    # A reframe offered as another way of seeing the problem.
    ("reframing", "cognitive", (r"\b(?:another way (?:to|of) (?:look|looking|see|seeing|think|thinking)|(?:see|look at) it (?:this|another|a different) way|"
     r"what if (?:we|you) (?:looked|saw|tried to see)|(?:a|the) (?:different|other) way (?:to|of) (?:see|seeing|look|looking))\b")),
    # Mechanisms in plain words: "many young people who cut say", "that's normal", "rum is a
    # depressant", "what anger does is", "the urge is a wave".
    ("psychoeducation", "psychoeducation", (r"\b(?:many (?:\w+ )?(?:people|couples|families|parents|teenagers|men|women) (?:who|with|in|after|say|find|feel)|"
     r"(?:that's|that is|it's|it is) (?:very |really |completely |quite )?(?:normal|common)(?: for| in| after| when|\.|,)|"
     r"(?:is|are) a depressant|what (?:anger|anxiety|panic|grief|alcohol|drinking|shame|fear|worry|the urge|trauma) does\b|"
     r"(?:the|an|that) urge (?:is|comes) (?:like )?a wave)")),
    # A concrete proposal to solve a practical problem.
    ("problem solving", "cognitive", (r"\b(?:would it help if|can i suggest something|could we try this|let's (?:make (?:that|it|this) concrete|"
     r"think (?:it|this|that) through|write (?:it|that|this) down)|(?:a|the) third option|(?:sketch|draft|write up|draw up) (?:a|an) "
     r"(?:\w+ ){0,2}(?:agreement|rota|schedule|budget|list))\b")),
]
#: Moves that are a technique only in a couple or family session (two or more clients): a
#: systemic reframe of what the clients share ("you both want the same thing", "the problem
#: isn't Chidinma, it's the pressure", "it landed as 'you're useless'") and family work
#: (circular questions, speaking to the family as a whole, pairing members up).
MULTI_CLIENT_MOVES: list[tuple[str, str, str]] = [
    ("reframing", "cognitive", (r"\b(?:you(?:'re| are)? both (?:want|wanting|coming|have|after|trying|care|carrying|worried)|each of you "
     r"(?:hears?|is|feels?|wants?|sees?)|(?:it's|it is|this is) not (?:really )?about (?:the )?\w+(?: \w+)?[,.;]? (?:it's|it is)(?: really)? about|"
     r"the problem (?:isn't|is not|in the room)|(?:landed|lands|came across|comes across) as|that's the pattern|not either of you)\b")),
    ("family work", "interpersonal", (r"\b(?:what do you notice when you hear|when you hear (?:him|her|them|your \w+|\w+) (?:say|talk)|"
     r"(?:the|your) whole family|(?:both|all) of you (?:want|are|have|love|care)|can i (?:say|ask) (?:something|this) (?:to|of) "
     r"(?:you both|both of you|all of you|each of you)|(?:see|saw|notice|hear) how much (?:\w+ )?(?:you (?:both |all )?)?(?:care|love|fear)|"
     r"could you and (?:\w+ ){1,2}(?:spend|do|go|have|try|sit)|what's underneath (?:it|that))\b")),
]
_STRATEGY_RX = [(n, c, re.compile(rx, re.IGNORECASE), n in THERAPIST_ONLY) for n, c, rx in STRATEGIES] + [
    (n, c, re.compile(rx, re.IGNORECASE), True) for n, c, rx in THERAPIST_MOVES]
_MULTI_CLIENT_RX = [(n, c, re.compile(rx, re.IGNORECASE), True) for n, c, rx in MULTI_CLIENT_MOVES]

EMOTIONS: dict[str, str] = {
    "anxiety and worry": r"\b(?:anxious|anxiety|worr\w+|nervous|panic\w*|scared|afraid|fear\w*|on edge|dread\w*|tense)\b",
    "sadness and low mood": r"\b(?:sad|sadness|(?:feel\w*|been|so|really) (?:low|down)|depress\w*|empty|crying|cried|tearful|miserable|heartbroken)\b",
    "anger and frustration": r"\b(?:angry|anger|furious|frustrat\w+|annoyed|irritat\w+|resent\w*|fed up)\b",
    "guilt and shame": r"\b(?:guilt\w*|ashamed|shame|embarrass\w+|my fault|blame myself)\b",
    "loneliness": r"\b(?:lonely|alone|isolated|no one to talk to|nobody)\b",
    "overwhelm and exhaustion": r"\b(?:overwhelm\w*|exhausted|drained|burn(?:ed|t)? out|too much|can't cope|can't switch off|stressed|stress)\b",
    "hopelessness": r"\b(?:hopeless|pointless|no point|give up|given up|never get better)\b",
    "hope and relief": r"\b(?:hope|hopeful|relieved|relief|better|proud|calmer|looking forward|grateful|happy)\b",
}
_EMOTION_RX = {k: re.compile(v, re.IGNORECASE) for k, v in EMOTIONS.items()}

POSITIVE = set("""good great better best calm calmer happy happier hopeful proud relieved relief glad enjoy enjoyed
fun nice lovely grateful thankful excited improving improved helped helpful helps progress confident rested
peaceful content okay fine managed laughed love loved safe supported strong stronger""".split())
NEGATIVE = set("""bad worse worst sad anxious anxiety worried worry worrying stressed stress angry upset awful terrible
tired exhausted lonely alone afraid scared hopeless empty numb hate hated cry crying cried panic panicked
overwhelmed overwhelming guilty ashamed worthless failure hurt pain miserable depressed struggling
struggle brutal dread frustrated frustrating""".split())
# Not sentiment: "down"/"low" are mostly spatial ("down here"), and "can't", "never",
# "nothing" are grammar; counting them invented low moods in ordinary conversation.
_NEGATORS = {"not", "no", "never", "don't", "didn't", "isn't", "wasn't", "aren't", "haven't", "hardly"}

_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|myself)\b", re.IGNORECASE)

_HOMEWORK = re.compile(
    r"\b(?:this (?:coming )?week,? i'?d like you to|i'?d (?:also )?like you to|i want you to|i'd encourage you to|"
    r"your homework|for homework|homework (?:is|for)|(?:could|can|will) you (?:try|keep|practi[cs]e|write|notice|"
    r"track|make|do|schedule|read|fill)|try to\b.*\b(?:every|each|once|twice|a day|daily|this week|before)|"
    r"(?:between now and|before) (?:our )?next (?:session|time|week)|keep a (?:journal|diary|log|record)|"
    r"let'?s (?:have you|set|agree)|your task (?:is|this week)|practi[cs]e (?:it|this|that)\b.*\b(?:every|each|daily|a day))",
    re.IGNORECASE,
)
_HOMEWORK_LEAD = re.compile(
    r"^(?:so,?\s*|ok(?:ay)?,?\s*|and\s+|alright,?\s*)*(?:this (?:coming )?week,?\s*|for homework,?\s*|between now and next (?:session|time|week),?\s*)?"
    r"(?:i'?d (?:also )?like you to|i (?:also )?want you to|i'd (?:also )?encourage you to|could you|can you|will you|your homework is to|your task is to)\s+",
    re.IGNORECASE,
)
_FOLLOW_UP = re.compile(
    r"\b(?:next (?:time|session|week)|come back to|return to|revisit|pick (?:this|that|it) up|look at (?:that|this) (?:more|again|next)|"
    r"explore (?:that|this) (?:more|further|next))\b",
    re.IGNORECASE,
)
_CONCERN = re.compile(
    r"\b(?:i'?m (?:really |so |still )?(?:worried|scared|afraid|anxious|not sure|unsure|concerned)|i (?:don't|do not) know (?:what|how|if|whether)|"
    r"what (?:if|do i|should i)|i can't (?:stop|figure)|i keep (?:thinking|wondering|worrying))\b",
    re.IGNORECASE,
)
_TRIGGER = re.compile(
    r"\b(?:whenever|every time|each time|makes me (?:feel )?(?:anxious|angry|sad|panic\w*|upset|stressed|nervous|worse)|"
    r"sets me off|triggers? (?:me|it)|when (?:i|he|she|they|my \w+) [^.,]{3,60}?,? i (?:feel|get|start|panic|freeze))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Said:
    sentence: Sentence
    segment: MergedSegment

    @property
    def text(self) -> str:
        return self.sentence.text


def _roles(segments: list[MergedSegment]) -> tuple[list[int], list[int]]:
    """Indices of client and therapist segments (client = everyone but the therapist)."""
    therapist = [i for i, s in enumerate(segments) if (s.role or "").upper() == "THERAPIST"]
    client = [i for i, s in enumerate(segments) if (s.role or "").upper() != "THERAPIST"]
    return client, therapist


def _sentences(segments: list[MergedSegment], idx: list[int]) -> list[_Said]:
    return [_Said(s, segments[i]) for i in idx for s in segment_sentences(segments, i)]


def _extract_topics(client: list[_Said], therapist: list[_Said]) -> list[str]:
    """Curated topics ranked by mentions: the client's words count fully, the therapist's
    at half weight (therapists often name the topic: "how has your sleep been?"). A topic
    only the therapist mentioned is not reported as something the client raised."""
    counts: Counter[str] = Counter()
    client_hits: set[str] = set()
    first_seen: dict[str, float] = {}
    for said, weight in [(s, 1.0) for s in client] + [(s, 0.5) for s in therapist]:
        for topic, rx in _TOPIC_RX.items():
            n = len(rx.findall(said.text))
            if n:
                counts[topic] += n * weight
                if weight == 1.0:
                    client_hits.add(topic)
                first_seen[topic] = min(first_seen.get(topic, said.sentence.start), said.sentence.start)
    ranked = sorted(client_hits, key=lambda t: (-counts[t], first_seen[t], t))
    return ranked[:6]


def _quote_score(text: str) -> float:
    toks = tokens(text)
    if not (5 <= len(toks) <= 40) or not _FIRST_PERSON.search(text):
        return 0.0
    emotional = sum(1 for rx in _EMOTION_RX.values() if rx.search(text))
    valence = sum(1 for t in toks if t in NEGATIVE or t in POSITIVE)
    return emotional * 2 + valence + (1 if re.search(r"\b(?:feel|felt|feeling)\b", text, re.I) else 0)


def _extract_quotes(client: list[_Said], limit: int = 5) -> list[SignificantQuote]:
    scored = [(s, _quote_score(s.text)) for s in client]
    top = sorted((x for x in scored if x[1] >= 3), key=lambda x: (-x[1], x[0].sentence.start))[:limit]
    top.sort(key=lambda x: x[0].sentence.start)
    return [SignificantQuote(
        quote=s.text, speaker=s.segment.speaker, role=s.segment.role,
        start=s.sentence.start, end=s.sentence.end,
        why="emotion-laden first-person statement (extractive)",
    ) for s, _ in top]


def _action_category(text: str) -> str:
    t = text.lower()
    if re.search(r"\b(?:journal|diary|log|track|record|note down|write down)\b", t):
        return "tracking"
    if re.search(r"\b(?:read|book|article|worksheet|handout)\b", t):
        return "reading"
    if re.search(r"\b(?:appointment|book in|see your (?:gp|doctor)|schedule a)\b", t):
        return "appointment"
    if re.search(r"\b(?:refer|referral|psychiatrist|specialist)\b", t):
        return "referral"
    if re.search(r"\b(?:practi[cs]e|try|exercise|every day|each day|daily)\b", t):
        return "practice"
    return "homework"


#: The therapist proposing or confirming a plan ("so the plan is", "let's agree", "how about you").
_AGREEMENT = re.compile(
    r"\b(?:so the plan is|the plan (?:for (?:this|the) week )?is|the plan (?:\w+ ){0,3}(?:says|said)|let'?s (?:agree|say|plan|make|try|book|put|schedule|aim|keep|set|meet|write|start)|"
    r"(?:can|could|shall) we (?:agree|say|book|try|make|aim|write|set|plan|ring|call)|shall we\b|how about (?:you|we|trying)|what if you (?:tried|try)|would you be (?:willing|up for|open) to|"
    r"i'?d (?:also |really )?(?:suggest|recommend)|i (?:also )?suggest|i'?d (?:also |really )?like (?:you|us|to see|to refer|to call|to ring|the \w+ (?:looked at|checked|seen)|\w+ to (?:have|see|come|go|try))|"
    r"(?:it's|it is|it'd be|it would be|it might be) worth (?:\w+ing)|to (?:recap|sum up|summari[sz]e)|one (?:more|last|other) thing|your (?:job|task|challenge|experiment) (?:is|this week|for)|by next (?:week|session|time)|"
    r"before we (?:meet|next meet|see each other)|we'll (?:also )?(?:call|ring|book|make|review|go over|check|contact|write|set up|"
    r"arrange|start|do)|i'm going to ask you to|(?:for|over) (?:this|the) (?:coming )?week,? (?:try|see if|notice|aim|keep|"
    r"practi[cs]e|have a go)|(?:this|next|over the) (?:coming )?week,? (?:when|if|whenever)|either of you (?:can|could)|"
    r"you (?:can|could) both)\b|^(?:so,? |and |okay,? )?try (?:the|to|and|a|doing|using|one|some)\b|^so\s*[:\u2014]|^(?:good|great|okay|ok|right)?[.,]?\s*so,? (?:this|next) week\b|"
    r"^(?:and |so |also |now |okay,? )?(?:keep|practi[cs]e|write down|track|record|rate|fill in|bring|schedule|plan|save) (?!going\b)\w+|"
    r"^(?:and |so |also |now |okay,? )?do (?:that|this|it) (?:when|every|each|twice|once|before|after)\b|"
    r"\bi'?d (?:also |really )?like (?:the|all|both|each) (?:\w+ ){0,2}to (?!know|hear|understand|ask)\w+",
    re.IGNORECASE,
)
#: The therapist's own next steps ("I'll send you the worksheet", "I'll write to your GP").
_THERAPIST_OWN = re.compile(
    r"^(?:(?:and|so|ok(?:ay)?|alright|right|after that|then|first|next|today|also|good|great),?\s*)*(?:(?:i'd like to|i want to) (?:call|ring|contact|refer|write to|book|"
    r"talk to you|speak to you|see you|check in)|(?:i'll|i will|i'm going to|i am going to) (?:also |just |then )?(?:send|email|write|call|refer|book|ring|"
    r"contact|speak|look into|print|check|get|put|find|pass|let|give|liaise|arrange|make|type|walk|phone|see|talk))\b|"
    # "I'd also like to talk to Danylo's school counsellor", "I can walk with you to the hall now",
    # "We can ring her together from here".
    r"\bi'?d (?:also )?like to (?:talk|speak) to (?!you\b|each\b|both\b|all\b|the two\b)|\b(?:i|we) can (?:walk|ring|call|phone|text|go|come)\b"
    r"(?: \w+){0,3} (?:together|with you|from here)\b|"
    r"\b(?:would it be (?:okay|ok|alright|all right)|is it (?:okay|ok|alright)|would you mind|are you (?:okay|ok) with|do i have your (?:permission|consent)) "
    r"(?:if i|for me to) (?:spoke|speak|talked|talk|called|call|rang|ring|wrote|write|contacted|contact|shared|share|referred|refer|let|sent|send|told|tell)\b",
    re.IGNORECASE,
)
#: A client's commitment, when it answers a suggestion or names a time ("okay, I'll try Tuesday").
_COMMITMENT = re.compile(
    r"^(?:(?:ok(?:ay)?|yeah|yes|yep|sure|fine|alright|right|so|and|um|well|i think|deal|oh),?\s*)*(?:i'll|i will|i'm going to|i am going to|"
    r"i can|i could|we'll|we will|we're going to|we can|we could) (?:definitely |also |just |really )?(?:(?:try|aim) (?:to )?)?(?:call|ring|book|make|do|text|talk|ask|go|write|"
    r"keep|track|use|put|take|start|stop|set|practi[cs]e|read|email|speak|tell|bring|give|leave|plan|get|see|check|sit|walk|move|have|"
    r"stick|turn|switch|fill|bake|join|come|look|try|pick|rate|record|list|note|send|sort|give)\b",
    re.IGNORECASE,
)
#: A first-person future commitment with any verb ("I'll buy a basket.", "I'll skip the gym lads this
#: weekend."), counted when it answers someone else's turn; not a narrative or a feeling ("I'll be
#: honest", "I'll tell you what happened", "I'll never get it", "I'll probably fail").
_OPEN_COMMITMENT = re.compile(
    r"^(?:(?:ok(?:ay)?|yeah|yes|yep|sure|fine|alright|right|so|and|um|well|deal|oh|then|also),?\s*)*(?:i'll|i will|i'm going to|i am going to|we'll|we will|"
    r"we're going to)(?! (?:be honest|admit|say|tell you|never|probably|maybe|see how|have to see|just see|lose|fail|die|kill|end up|regret|hate|miss|"
    r"go mad|go crazy|explode|cry|be fine|be okay|be ok|survive|think about it|let you know|believe it|be \w+ing|try not to|go now|"
    r"bite|snap|scream|murder|strangle|throttle)\b) \w+",
    re.IGNORECASE,
)
#: "...from now on", "tonight", "on the way home": a time that makes a statement a plan.
_PLAN_TIME = re.compile(r"\b(?:from now on|tonight|tomorrow|on the way home|this afternoon|this evening|after (?:school|work|dinner|tea)|"
                        r"every (?:day|night|morning|evening|week)|each (?:day|night|week))\b", re.IGNORECASE)
#: Restating or naming a plan: "we said we'd take twenty minutes apart", "I have to see the solicitor on Thursday".
_PLAN_STATEMENT = re.compile(
    r"\b(?:we|i) (?:said|agreed|promised|decided) (?:we'd|i'd|to|that|we would|i would)\b|"
    r"\b(?:i|we) (?:have to|need to|must|'ve got to|have got to) (?:go|call|ring|book|see|take|get|make|do|sort)\b(?=[^.]*\b(?:on|this|next|by|before) "
    r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|weekend|session))",
    re.IGNORECASE,
)
#: The client taking up a suggestion question ("What about the walk in the morning?" / "I could do that.").
_ACCEPT_START = re.compile(
    r"^(?:(?:ugh|um|uh|erm|well|hmm|oh|a \w+),? )*(?:ok(?:ay)?|yes|yeah|yep|sure|fine|alright|i could|i can|i'll|i will|that(?:'s| sounds| would be|'d be) (?:good|fine|doable|fair|ok|great|nice|lovely)|"
    r"deal|let's do|we could|we can|we'll|we will|got it|will do|sounds (?:good|like a plan|fair|doable)|i like that|that works|(?:he|she|they|i)'d (?:love|like) that|"
    # "That's grand.", "Everton would like that.", "Same time." (to "Same time next week?")
    r"that's grand|(?:\w+ ){0,2}\w+ would (?:love|like) that|same time|"
    # "She'd do that.", "Brother Omar can do it.", "I would like that.", "I suppose Linda can."
    r"(?:\w+ ){0,2}\w+(?: can| could| will| would|'ll|'d) do (?:that|it)|i would (?:love|like) that|i (?:suppose|guess) \w+ (?:can|could|will))\b",
    re.IGNORECASE,
)
_WHEN = re.compile(
    r"\b(?:this week|this weekend|at the weekend|(?:on|every|next) (?:monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)s?|every (?:day|morning|night|evening)|each (?:day|morning|night|evening)|before (?:next|our next|we meet)|"
    r"by next|twice|once a|three times)\b",
    re.IGNORECASE,
)
_ACCEPTANCE_ONLY = re.compile(
    r"\b(?:i|we)(?:'ll| will| can| could)(?: definitely| probably| maybe)? (?:do|try|manage|give|have a go at|give it a go with) "
    r"(?:that|it|this|them)\b(?: one| too| again)?[^a-z]*$"
)
_ROUTINE = re.compile(r"\b(?:as usual|like always|as normal|as always|like every)\b")
_SUGGESTION_QUESTION = re.compile(r"\b(?:could|can|will|would) you\b|\bhow about\b|\bwhat if (?:you|we|the|your)\b|\bshall we\b|\bwould you be\b|"
                                  # "Could Dale come by tonight?", "could Ashley drive?"
                                  r"^(?:\w+,? ){0,8}(?:could|can|would) (?-i:[A-Z])\w+ (?:come|drive|take|go|do|help|fill|hold|keep|call|ring|stay|look after|bring|pick|have|sit)\b|"
                                  r"\b(?:can|could) we (?:ring|call|write|try|book|agree|plan|set)\b|\bhow (?:would|do) you feel about (?:that|trying|doing|\w+ing)\b|"
                                  r"\bwould (?:\w+ )?be (?:willing|up for|open) to\b|\bwould it be (?:okay|ok|alright|all right) if (?:you|we)\b|"
                                  # The next appointment: "Same time next Wednesday?", "Two weeks from today?"
                                  r"\bsame time\b[^?]{0,80}\?\s*$|\b(?:two|three|four|a couple of) weeks(?: from (?:today|now)|'? time)?[^?]{0,80}\?\s*$|"
                                  r"\bwhat about (?:the|a|trying|doing|you|if)\b|\bwhat about\b(?=[^?]*\b(?:monday|tuesday|wednesday|thursday|friday|"
                                  r"saturday|sunday|tomorrow|tonight|weekend|after (?:school|work|dinner|tea)|mornings?|evenings?)\b)", re.IGNORECASE)


def _is_assignment(s: _Said) -> bool:
    """A therapist sentence that sets homework or proposes/confirms a plan."""
    if s.text.rstrip().endswith("?") and not _SUGGESTION_QUESTION.search(s.text) and not _THERAPIST_OWN.search(normalize(s.text)):
        return False
    return bool(_HOMEWORK.search(s.text) or _AGREEMENT.search(s.text) or _THERAPIST_OWN.search(normalize(s.text)))


#: The therapist telling someone what to do ("If he stops sleeping, call the crisis team"): an
#: item once the client takes it up ("We will.").
_INSTRUCTION = re.compile(
    r"(?:^|,\s*)(?:please |just |so |and )?(?:call|ring|go|keep|lock|take|try|write|bring|use|put|make|give|ask|tell|stay|remove|"
    r"get|book|text|practi[cs]e|start|stop|don't wait|do not wait|phone)\b(?! (?:on|ahead|back to that)\b)", re.IGNORECASE)
#: A question that asks for the plan ("So this week?", "What would a realistic cut-off be?").
_PLAN_QUESTION = re.compile(
    r"\b(?:this week|next week|realistic|what will you|what would you (?:like to )?(?:try|do)|when (?:could|will|would|can) you|"
    r"(?:one|the first|a small|a first) (?:step|thing)|how (?:could|will|would|can) you|what could you|what's the plan|"
    r"what (?:time|day) (?:would|could|will))\b[^?]*\?\s*$", re.IGNORECASE)
#: Conditional plans in the client's words ("If I'm at a six I'll go out to the garage.").
_IF_THEN_PLAN = re.compile(r"^(?:(?:and|so|okay|ok),?\s*)*(?:if|when|whenever) (?:i|we)\b[^.]*,?\s*(?:i'll|i will|we'll|we will|i'm going to)\b",
                           re.IGNORECASE)
_PRESENT_PLAN = re.compile(r"\b(?:i'm|we're|i am|we are) (?!going\b)(?:\w+ing)\b", re.IGNORECASE)
#: An answer to a plan question is the plan when it says something concrete (not "Probably drink.").
_CONCRETE_ANSWER = re.compile(r"\b(?:\d+|o'clock|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
                              r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|morning|evening|night|lunch|dinner|tea|"
                              r"week|weekend|day|times?|minutes?|hours?)\b", re.IGNORECASE)


@dataclass
class _Turns:
    """What the previous turns leave open for the next speaker to take up."""

    prev_suggests: bool = False
    pending: _Said | None = None  # a suggestion or instruction, an item once the next speaker takes it up
    plan_question: bool = False  # "So this week?": a concrete answer is the plan


def _therapist_turn_actions(said: list[_Said], state: _Turns) -> list[tuple[_Said, str]]:
    hits = [x for x in said if _is_assignment(x)]
    last = said[-1] if said else None
    instruction = next((x for x in reversed(said) if _INSTRUCTION.search(x.text) and not x.text.rstrip().endswith("?")), None)
    suggestion = last if last is not None and _SUGGESTION_QUESTION.search(last.text) else None
    state.pending = (suggestion or instruction) if not hits else None
    state.prev_suggests = bool(hits) or suggestion is not None
    state.plan_question = bool(last is not None and _PLAN_QUESTION.search(last.text))
    return [(x, "therapist" if _THERAPIST_OWN.search(normalize(x.text)) else "client") for x in hits]


def _is_commitment(x: _Said, norm: str, state: _Turns, answering: bool) -> bool:
    return bool((_COMMITMENT.search(norm) and (state.prev_suggests or _WHEN.search(x.text))) or _PLAN_STATEMENT.search(norm)
                or (answering and (_OPEN_COMMITMENT.search(norm) or _IF_THEN_PLAN.search(norm)))
                or (_PRESENT_PLAN.search(norm) and _PLAN_TIME.search(norm)))


def _client_turn_actions(said: list[_Said], speaker: str, state: _Turns, answering: bool) -> list[tuple[_Said, str]]:
    texts = [normalize(x.text) for x in said]
    out: list[tuple[_Said, str]] = []
    if state.pending is not None and state.pending.segment.speaker != speaker and any(_ACCEPT_START.search(t) for t in texts[:2]):
        out.append((state.pending, "client"))
    for k, (x, norm) in enumerate(zip(said, texts)):
        if _ACCEPTANCE_ONLY.search(norm) or _ROUTINE.search(norm):
            # "Saturday pancakes. Just the two of us. I can do that.": the plan is what came before
            if k > 0 and not out and answering and _ACCEPTANCE_ONLY.search(norm):
                out.append((said[0], "client"))
            continue  # "Okay, I can do that": agrees to the therapist's item, adds none
        if _is_commitment(x, norm, state, answering):
            out.append((x, "client"))
    if (state.plan_question and not out and said and not re.match(r"^(?:no|not|nothing|i don't know|probably|maybe|um|uh)\b", texts[0])
            and len(texts[0].split()) >= 3 and _CONCRETE_ANSWER.search(texts[0])):
        out.append((said[0], "client"))  # the answer to "So this week?" is the plan
    # A client's own suggestion question to another client ("Lily, what about nails on Wednesday?")
    last = said[-1] if said else None
    state.pending = last if last is not None and last.text.rstrip().endswith("?") and _SUGGESTION_QUESTION.search(last.text) else None
    state.prev_suggests, state.plan_question = False, False
    return out


def _action_sentences(segments: list[MergedSegment]) -> list[tuple[_Said, str]]:
    """(sentence, owner) of every sentence where an action is set or agreed, in time order.

    Set by the therapist (homework language, a proposed or confirmed plan, their own next
    step) or agreed by a client in answer to someone else's turn: a first-person future
    commitment ("I'll ring the surgery this afternoon"), a conditional plan ("if I'm at a six
    I'll go out"), a plan with a time ("I'm keeping my keys with me from now on"), an answer
    to a plan question ("So this week?" / "Chopping vegetables four times."), or taking up a
    suggestion or instruction ("What about nails on Wednesday?" / "That'd be nice.").
    """
    out: list[tuple[_Said, str]] = []
    state = _Turns()
    last_other_role = ""  # role of the last turn by someone other than the current speaker
    prev_speaker = None
    for i, seg in enumerate(segments):
        said = [_Said(x, seg) for x in segment_sentences(segments, i)]
        if prev_speaker is not None and prev_speaker != seg.speaker:
            last_other_role = (segments[i - 1].role or "").upper()
        answering = prev_speaker is not None and (prev_speaker != seg.speaker or bool(last_other_role))
        if (seg.role or "").upper() == "THERAPIST":
            out += _therapist_turn_actions(said, state)
        else:
            out += _client_turn_actions(said, seg.speaker, state, answering)
        prev_speaker = seg.speaker
    seen: set[float] = set()  # one item per sentence
    uniq = []
    for x, owner in sorted(out, key=lambda x: x[0].sentence.start):
        if x.sentence.start not in seen:
            seen.add(x.sentence.start)
            uniq.append((x, owner))
    return uniq


def _extract_actions(segments: list[MergedSegment]) -> list[ActionItem]:
    """Homework and agreed next steps, each with the verbatim sentence and time it was agreed."""
    items: list[ActionItem] = []
    seen: set[str] = set()
    for s, owner in _action_sentences(segments):
        task = _HOMEWORK_LEAD.sub("", s.text).strip().rstrip(".?!")
        task = task[:1].upper() + task[1:] if task else s.text
        key = normalize(task)
        if key in seen:
            continue
        seen.add(key)
        who = "Therapist" if (s.segment.role or "").upper() == "THERAPIST" else "Client"
        items.append(ActionItem(task=task, category=_action_category(s.text),
                                details=f'{who} at {s.sentence.start:.1f}s: "{s.text}"', owner=owner,
                                evidence=s.text, start=s.sentence.start, end=s.sentence.end))
    return items


def _extract_strategies(client: list[_Said], therapist: list[_Said]) -> list[Strategy]:
    found: dict[str, Strategy] = {}
    order: list[str] = []
    everything = sorted(client + therapist, key=lambda s: s.sentence.start)
    several_clients = len({s.segment.speaker for s in client}) >= 2
    patterns = _STRATEGY_RX + (_MULTI_CLIENT_RX if several_clients else [])
    for s in everything:
        is_client = (s.segment.role or "").upper() != "THERAPIST"
        for name, cat, rx, therapist_only in patterns:
            if not rx.search(s.text) or (is_client and therapist_only):
                continue
            if is_client and re.search(r"\b(?:tried|did|used|practi[cs]ed|been doing|helped|kept)\b", s.text, re.I):
                status = "practiced"
            elif not is_client and _HOMEWORK.search(s.text):
                status = "assigned"
            elif not is_client and re.search(r"\b(?:how did|how was|last (?:week|time)|did you)\b", s.text, re.I):
                status = "reviewed"
            else:
                status = "introduced"
            rank = {"introduced": 0, "reviewed": 1, "practiced": 2, "assigned": 3}
            prev = found.get(name)
            if prev is None:
                order.append(name)
            if prev is None or rank[status] > rank[prev.status]:
                found[name] = Strategy(name=name, category=cat, status=status,
                                       context=f"{'client' if is_client else 'therapist'} at {s.sentence.start:.1f}s",
                                       evidence=s.text, start=s.sentence.start, end=s.sentence.end)
    return [found[n] for n in order]


def _extract_emotions(client: list[_Said]) -> list[str]:
    counts = Counter()
    for s in client:
        for name, rx in _EMOTION_RX.items():
            counts[name] += len(rx.findall(s.text))
    return [n for n in sorted(counts, key=lambda n: (-counts[n], n)) if counts[n] > 0][:5]


def _sentiment(texts: list[str]) -> tuple[int, int]:
    pos = neg = 0
    for text in texts:
        toks = tokens(text)
        for i, t in enumerate(toks):
            flipped = any(p in _NEGATORS for p in toks[max(0, i - 2):i])
            if t in POSITIVE or (t in NEGATIVE and t not in _NEGATORS):
                positive = (t in POSITIVE) != flipped  # "not good" counts as negative
                if positive:
                    pos += 1
                else:
                    neg += 1
    return pos, neg


def _score(pos: int, neg: int) -> float:
    return (pos - neg) / (pos + neg + 2)


def _mood(client: list[_Said]) -> tuple[SessionMood, MoodTrajectory]:
    if not client:
        return SessionMood.neutral, MoodTrajectory.stable
    pos, neg = _sentiment([s.text for s in client])
    overall = _score(pos, neg)
    if pos + neg < 3:  # too little evidence to call a mood: say neutral, not a guess
        return SessionMood.neutral, MoodTrajectory.stable
    if pos >= 3 and neg >= 3 and abs(overall) < 0.15:
        mood = SessionMood.mixed
    elif overall <= -0.5:
        mood = SessionMood.very_low
    elif overall < -0.15:
        mood = SessionMood.low
    elif overall >= 0.5:
        mood = SessionMood.very_positive
    elif overall > 0.15:
        mood = SessionMood.positive
    else:
        mood = SessionMood.neutral
    t0 = min(s.sentence.start for s in client)
    t1 = max(s.sentence.end for s in client)
    span = max(t1 - t0, 1e-6)
    thirds: list[list[str]] = [[], [], []]
    for s in client:
        thirds[min(2, int((s.sentence.start - t0) / span * 3))].append(s.text)
    evidence = [_sentiment(t) for t in thirds]
    if any(p + n < 2 for p, n in evidence):  # a third without sentiment words has no trajectory
        return mood, MoodTrajectory.stable
    a, b, c = (_score(p, n) for p, n in evidence)
    if (b - a > 0.3 and b - c > 0.3) or (a - b > 0.3 and c - b > 0.3):
        traj = MoodTrajectory.fluctuating
    elif c - a > 0.25:
        traj = MoodTrajectory.improving
    elif a - c > 0.25:
        traj = MoodTrajectory.declining
    else:
        traj = MoodTrajectory.stable
    return mood, traj


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "\u2026"


def _follow_ups(therapist: list[_Said], client: list[_Said], segments: list[MergedSegment]) -> tuple[list[str], list[str]]:
    follow = [_short(s.text) for s in therapist if _FOLLOW_UP.search(s.text) and not _HOMEWORK.search(s.text)]
    concerns: list[str] = []
    if client:
        t_end = max(s.sentence.end for s in client)
        t_start = min(s.sentence.start for s in client)
        late = t_start + (t_end - t_start) * 2 / 3
        seg_index = {id(seg): i for i, seg in enumerate(segments)}
        for s in client:
            i = seg_index[id(s.segment)]
            unanswered_q = s.text.rstrip().endswith("?") and not any(
                (x.role or "").upper() == "THERAPIST" for x in segments[i + 1:i + 2])
            if (_CONCERN.search(s.text) and s.sentence.start >= late) or unanswered_q:
                concerns.append(_short(s.text))
    return _dedupe(follow)[:5], _dedupe(concerns)[:5]


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for it in items:
        k = normalize(it)
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


def _triggers(client: list[_Said]) -> list[str]:
    return _dedupe([_short(s.text) for s in client if _TRIGGER.search(s.text)])[:5]


def _join(items: list[str]) -> str:
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _patient_summary(topics: list[str], actions: list, strategies: list) -> str:
    p = [OFFLINE_LABEL]
    if topics:
        p.append(f"In this session we talked about {_join(topics)}.")
    if actions:
        p.append("Before next time: " + "; ".join(a.task for a in actions) + ".")
    if strategies:
        p.append("Strategies we discussed: " + _join([s.name for s in strategies]) + ".")
    return " ".join(p)


def _classified_strategies(found: list[Strategy], segments: list[MergedSegment],
                           classifier: InterventionClassifier) -> list[Strategy]:
    """The patterns' strategies plus the techniques the classifier finds that they missed;
    each added one's evidence is the verbatim sentence of its best therapist turn."""
    from services.notes.intervention_classifier import STRATEGY_OF, TherapistTurn

    turns = [TherapistTurn(s.speaker or "", (s.role or "").upper() == "THERAPIST", s.text) for s in segments]
    several_clients = len({s.speaker for s in segments if (s.role or "").upper() != "THERAPIST"}) >= 2
    names = {s.name for s in found}
    out = list(found)
    for hit in classifier.detect(turns, several_clients):
        name, category = STRATEGY_OF[hit.label]
        said = _sentences(segments, [hit.turn])
        if name in names or not said:
            continue
        best = said[classifier.best_sentence(hit.label, [x.text for x in said])]
        out.append(Strategy(name=name, category=category, status="assigned" if _HOMEWORK.search(best.text) else "introduced",
                            context=f"therapist at {best.sentence.start:.1f}s (intervention classifier, p={hit.probability:.2f})",
                            evidence=best.text, start=best.sentence.start, end=best.sentence.end))
        names.add(name)
    return out


def build_offline_notes(
    segments: list[MergedSegment], speakers: list[SpeakerInfo], detector: RiskDetector | None = None,
    interventions: InterventionClassifier | None = None,
) -> ClinicalNotes:
    """Extractive clinical notes; every quote and evidence string is verbatim transcript text.
    ``interventions`` (optional) only adds techniques the patterns missed."""
    client_idx, therapist_idx = _roles(segments)
    client = _sentences(segments, client_idx)
    therapist = _sentences(segments, therapist_idx)
    topics = _extract_topics(client, therapist)
    quotes = _extract_quotes(client)
    actions = _extract_actions(segments)
    strategies = _extract_strategies(client, therapist)
    if interventions is not None and therapist_idx:
        strategies = _classified_strategies(strategies, segments, interventions)
    emotions = _extract_emotions(client)
    mood, trajectory = _mood(client)
    follow, concerns = _follow_ups(therapist, client, segments)
    flags = detect_risk(segments, detector)
    triggers = _triggers(client)
    roles_known = bool(therapist_idx)

    high = sum(f.high_priority for f in flags)
    topic_summary = (f"Main topics (by keyword frequency in the client's speech): {_join(topics)}." if topics
                     else "No recurring topics were detected by keyword matching.")
    parts = [OFFLINE_LABEL, topic_summary]
    if emotions:
        parts.append(f"Emotional themes in the client's language: {_join(emotions)}.")
    parts.append(f"Session mood (sentiment lexicon): {mood.value.replace('_', ' ')}; trajectory: {trajectory.value}.")
    if strategies:
        parts.append("Strategies mentioned: " + _join([f"{s.name} ({s.status})" for s in strategies]) + ".")
    if actions:
        parts.append("Homework set: " + "; ".join(a.task for a in actions) + ".")
    if flags:
        cats = sorted({f.category.value.replace("_", " ") for f in flags})
        parts.append(f"Risk safety net: {len(flags)} flag(s), {high} high priority ({_join(cats)}); see risk flags and assess.")
    else:
        parts.append("Risk safety net: no risk language detected (absence of flags is not an assessment).")
    if not roles_known:
        parts.append("Speaker roles were not identified; all speech was treated as the client's.")
    therapist_notes = " ".join(parts)

    patient_summary = _patient_summary(topics, actions, strategies)
    return ClinicalNotes(
        key_topics=topics, topic_summary=topic_summary, strategies=strategies, emotional_themes=emotions,
        triggers=triggers, action_items=actions, significant_quotes=quotes, session_mood=mood,
        mood_trajectory=trajectory, follow_up_topics=follow, unresolved_concerns=concerns, risk_flags=flags,
        therapist_notes=therapist_notes, patient_summary=patient_summary,
    )
