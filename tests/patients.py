"""Scripts of what simulated patients type, shared by tests and benchmarks."""

# A new patient on SMS or WhatsApp: language menu, consent, menu, then the whole COVID-19
# screening with mild symptoms (ends in self_care).
COVID_SCREENING = [
    "hi",
    "1",  # the language menu at first contact: English
    "yes",  # consent
    "1",  # menu: COVID-19 check
    "0",  # no warning signs
    "34",
    "fever and cough",
    "101.3F",
    "97",
    "no",
    "no",
    "no",
    "no",
    "0",
]
