"""Generated red-flag evaluation sets (issue 11): messages from templates x synonyms x typos x
languages x negation and time frames, fixed seed, split into a tuning and a held-out half.
Imports only the standard library and PyYAML (enlarge.main also nlu, to score an enlarged
tuning pool); see docs/nlu.md (Evaluation that cannot be tuned to).
"""
