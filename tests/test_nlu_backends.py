"""Choosing the interpreter from config (nlu/backends.py)."""

from __future__ import annotations

import pytest

from nlu.backends import ConfigError, make_interpreter
from nlu.interpreter import Interpreter
from nlu.rasa import RasaInterpreter


def test_embedded_by_default() -> None:
    it = make_interpreter({})
    assert isinstance(it, Interpreter) and it.threshold == 0.25


def test_threshold_keys() -> None:
    assert make_interpreter({"threshold": 0.5}).threshold == 0.5
    assert make_interpreter({"confidence_threshold": 0.3}).threshold == 0.3  # config.yaml key


def test_rasa_backend_takes_secrets_from_the_environment() -> None:
    b = make_interpreter(
        {"backend": "rasa", "rasa_url": "http://127.0.0.1:5005", "rasa_timeout_s": 1.5},
        {"RASA_TOKEN": "t0k"},
    )
    try:
        assert isinstance(b, RasaInterpreter)
        assert b.url == "http://127.0.0.1:5005/model/parse"
        assert b._client.params["token"] == "t0k"
        assert b._client.timeout.read == 1.5
    finally:
        b.close()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"nlu\.rasa_url"):
        make_interpreter({"backend": "rasa"}, {})
    with pytest.raises(ConfigError, match=r"nlu\.backend"):
        make_interpreter({"backend": "watson"}, {})
