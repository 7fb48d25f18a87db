"""Console accounts: argon2id hashes, log-in without lock-out, TOTP, expiring server-side
sessions, CSRF tokens, the first-start admin and `carebridge users`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from pg import dump_all

from bot.auth import (
    WRONG,
    Auth,
    AuthError,
    ensure_admin,
    hash_password,
    token_hash,
    verify_password,
)
from bot.cli_users import users
from bot.config import Config, ConsoleConfig
from bot.store import Role, SqlStore

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
GOOD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def real_argon2() -> None:
    """Ask for this to hash with the production parameters (the others use cheap ones)."""


@pytest.fixture(autouse=True)
def cheap_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "real_argon2" not in request.fixturenames:
        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        monkeypatch.setattr("bot.auth._hasher", cheap)


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    return any_store


@pytest.fixture
def auth(store: SqlStore, clock: Clock) -> Auth:
    config = ConsoleConfig(session_hours=8, idle_minutes=30)
    return Auth(store, config, clock=clock, env={})


def test_passwords_are_stored_as_salted_argon2id_hashes(real_argon2: None) -> None:
    first, second = hash_password(GOOD), hash_password(GOOD)
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and first != second
    assert verify_password(first, GOOD)
    assert not verify_password(first, GOOD + "!")
    assert not verify_password("not a hash", GOOD)


def test_a_new_user_gets_a_one_time_password_to_change(auth: Auth) -> None:
    user, one_time = auth.add_user("Dr.Rao", "clinician")
    assert user.username == "dr.rao" and user.role is Role.CLINICIAN
    assert one_time and len(one_time) >= 16 and user.must_change_password
    assert one_time not in user.password_hash
    assert auth.authenticate("dr.rao", one_time).id == user.id


@pytest.mark.parametrize(
    ("username", "role", "password", "code"),
    [
        ("x", "clinician", None, "bad_username"),
        ("has space", "clinician", None, "bad_username"),
        ("dr_ok", "surgeon", None, "bad_role"),
        ("dr_ok", "clinician", "short", "weak_password"),
        ("dr_ok", "clinician", "dr_ok-is-my-password", "weak_password"),
    ],
)
def test_bad_user_details_are_refused(
    auth: Auth, username: str, role: str, password: str | None, code: str
) -> None:
    with pytest.raises(AuthError) as err:
        auth.add_user(username, role, password=password)
    assert err.value.code == code


def test_a_username_is_taken_once(auth: Auth) -> None:
    auth.add_user("dr_rao", "clinician")
    with pytest.raises(AuthError, match="taken"):
        auth.add_user("DR_RAO", "admin")


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(auth: Auth) -> None:
    auth.add_user("dr_rao", "clinician", password=GOOD)
    with pytest.raises(AuthError) as wrong:
        auth.authenticate("dr_rao", "nope")
    with pytest.raises(AuthError) as unknown:
        auth.authenticate("nobody", "nope")
    assert str(wrong.value) == str(unknown.value) == WRONG


def test_failures_never_lock_the_account(auth: Auth, clock: Clock) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    for _ in range(50):
        with pytest.raises(AuthError) as err:
            auth.authenticate("dr_rao", "guess")
        assert err.value.code == "bad_credentials"
    assert auth.authenticate("dr_rao", GOOD).id == user.id  # no lock: throttling is per client
    actions = [e.action for e in auth.store.audit_log(user_id=user.id, limit=500)]
    assert actions.count("login_failed") == 50


def test_an_admin_reset_gives_a_new_one_time_password(auth: Auth) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    fresh = auth.reset_password(user.id)
    assert auth.authenticate("dr_rao", fresh).must_change_password


def test_a_disabled_user_cannot_log_in_and_their_sessions_end(auth: Auth) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, _ = auth.start_session(user)
    auth.set_disabled(user.id, True)
    assert auth.session_for(token) is None
    with pytest.raises(AuthError) as err:
        auth.authenticate("dr_rao", GOOD)
    assert err.value.code == "disabled"
    auth.set_disabled(user.id, False)
    assert auth.authenticate("dr_rao", GOOD).id == user.id


def test_an_admin_cannot_disable_themselves(auth: Auth) -> None:
    admin, _ = auth.add_user("root", "admin", password=GOOD)
    with pytest.raises(AuthError, match="yourself"):
        auth.set_disabled(admin.id, True, by=admin)


def test_the_store_keeps_only_a_hash_of_the_session_token(auth: Auth, store: SqlStore) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, login = auth.start_session(user)
    assert login.session.token_hash == token_hash(token) != token
    dump = dump_all(store)
    assert token not in dump
    found = auth.session_for(token)
    assert found is not None and found.user.id == user.id and found.csrf == login.csrf


def test_sessions_end_at_their_expiry(auth: Auth, clock: Clock) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, _ = auth.start_session(user)
    for _ in range(17):  # active every 29 minutes: the idle limit never bites
        clock.advance(minutes=29)
        if clock.now < T0 + timedelta(hours=8):
            assert auth.session_for(token) is not None
    assert auth.session_for(token) is None


def test_sessions_end_when_idle(auth: Auth, clock: Clock) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, _ = auth.start_session(user)
    clock.advance(minutes=31)
    assert auth.session_for(token) is None


def test_background_polling_does_not_keep_an_idle_session_alive(auth: Auth, clock: Clock) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, _ = auth.start_session(user)
    for _ in range(3):
        clock.advance(minutes=10)
        assert auth.session_for(token, touch=False) is not None
    clock.advance(minutes=1)
    assert auth.session_for(token, touch=False) is None


def test_logout_and_a_password_change_end_sessions(auth: Auth) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    token, login = auth.start_session(user)
    other, _ = auth.start_session(user)
    auth.end_session(login)
    assert auth.session_for(token) is None and auth.session_for(other) is not None
    still = auth.session_for(other)
    assert still is not None
    with pytest.raises(AuthError, match="current password is wrong"):
        auth.change_password(still, "nope", "another good password")
    auth.change_password(still, GOOD, "another good password")
    assert auth.session_for(other) is None
    assert not auth.authenticate("dr_rao", "another good password").must_change_password


@pytest.mark.parametrize("token", [None, "", "x" * 500, "not-a-token"])
def test_a_missing_or_forged_cookie_is_no_session(auth: Auth, token: str | None) -> None:
    assert auth.session_for(token) is None


def test_csrf_tokens_belong_to_one_session(auth: Auth) -> None:
    user, _ = auth.add_user("dr_rao", "clinician", password=GOOD)
    _, mine = auth.start_session(user)
    _, theirs = auth.start_session(user)
    assert Auth.check_csrf(mine, mine.csrf)
    assert not Auth.check_csrf(mine, theirs.csrf)
    assert not Auth.check_csrf(mine, "")
    assert not Auth.check_csrf(mine, None)


def test_the_log_in_form_token_is_signed_and_bound_to_its_cookie(
    auth: Auth, store: SqlStore
) -> None:
    nonce, token = auth.login_form_token()
    assert auth.check_login_form(nonce, token)
    other_nonce, _ = auth.login_form_token()
    assert not auth.check_login_form(other_nonce, token)
    assert not auth.check_login_form(nonce, token[:-2] + "xx")
    assert not auth.check_login_form(nonce, token, max_age_s=-1)
    elsewhere = Auth(store, auth.config, env={"CAREBRIDGE_SECRET_KEY": "another key"})
    assert not elsewhere.check_login_form(nonce, token)


def test_a_weaker_hash_is_upgraded_at_log_in(
    auth: Auth, store: SqlStore, real_argon2: None
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)
    user_id = store.add_user("dr_old", weak, "clinician", T0, must_change_password=False)
    assert user_id is not None
    auth.authenticate("dr_old", GOOD)
    user = store.get_user(user_id)
    assert user is not None and user.password_hash != weak
    assert "m=65536" in user.password_hash


def test_the_first_start_creates_one_admin(auth: Auth) -> None:
    password = ensure_admin(auth)
    assert password is not None
    assert ensure_admin(auth) is None
    [admin] = auth.store.users()
    assert (admin.username, admin.role, admin.must_change_password) == ("admin", "admin", True)
    assert auth.authenticate("admin", password).id == admin.id


def test_the_users_command(tmp_config: Config) -> None:
    runner = CliRunner()
    obj = {"config": tmp_config}
    added = runner.invoke(users, ["add", "dr_rao", "--role", "clinician"], obj=obj)
    assert added.exit_code == 0, added.output
    password = added.output.strip().rsplit(" ", 1)[-1]
    assert "created dr_rao (clinician)" in added.output
    listed = runner.invoke(users, ["list"], obj=obj)
    assert "dr_rao" in listed.output and "one-time password" in listed.output
    assert runner.invoke(users, ["disable", "dr_rao"], obj=obj).exit_code == 0
    assert "disabled" in runner.invoke(users, ["list"], obj=obj).output
    assert runner.invoke(users, ["enable", "dr_rao"], obj=obj).exit_code == 0
    reset = runner.invoke(users, ["reset-password", "dr_rao"], obj=obj)
    assert reset.exit_code == 0 and password not in reset.output
    missing = runner.invoke(users, ["reset-password", "nobody"], obj=obj)
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output
    taken = runner.invoke(users, ["add", "dr_rao", "--role", "admin"], obj=obj)
    assert taken.exit_code == 1 and "taken" in taken.output
    bad = runner.invoke(users, ["add", "dr_x", "--role", "surgeon"], obj=obj)
    assert bad.exit_code == 2
