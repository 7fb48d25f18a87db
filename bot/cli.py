"""The `carebridge` command line: chat, triage, flows, nlu, serve, workers and the groups.

A composition root: may import anything in bot, nlu and channels. Imports are lazy (inside
the commands, and the groups load on first use) so `carebridge --help` starts quickly. An
operator's mistake (a bad setting, a port in use, a database that cannot be written, bad
input) is one `Error:` line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from bot.errors import CarebridgeError, ConfigError, StoreError

if TYPE_CHECKING:
    import socket

    from bot.config import Config
    from bot.flow import Flow
    from bot.messages import Outbound
    from bot.store import Store

# Command groups in their own modules, loaded only when used: name -> (module:attribute,
# the one-line help shown by `carebridge --help`; tests/test_cli.py keeps it true).
LAZY_GROUPS = {
    "broadcast": (
        "bot.broadcasts.cli:broadcast",
        "Health-advice broadcasts to subscribers (docs/broadcasts.md).",
    ),
    "contacts": ("bot.io.cli:contacts", "Bring contacts in from a CSV or XLSX file."),
    "export": ("bot.io.cli:export", "Results out: CSV per flow or a FHIR R4 Bundle."),
    "nlu": ("bot.cli_nlu:nlu", "Understanding layer: parse, test and train."),
    "patients": (
        "bot.cli_patients:patients",
        ("Enroll patients for scheduled check-ins; see their schedules, check-ins and trends."),
    ),
    "users": ("bot.cli_users:users", "Console users: clinicians, coordinators and admins."),
    "tokens": ("bot.api.cli:tokens", "API tokens for other systems (docs/api.md)."),
}


class LazyGroup(click.Group):
    """A click group whose LAZY_GROUPS are imported on first use (click's lazy loading)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS and cmd_name not in self.commands:
            module, _, attr = LAZY_GROUPS[cmd_name][0].partition(":")
            command = getattr(import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list without importing the lazy groups."""
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_GROUPS and name not in self.commands:
                rows.append((name, LAZY_GROUPS[name][1]))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _config(ctx: click.Context) -> Config:
    cfg: Config = ctx.obj["config"]
    return cfg


@click.group(cls=LazyGroup)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level (ids only, never text).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or one JSON object each (default: logging.json in the config).",
)
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, verbose: bool, log_format: str | None
) -> None:
    """carebridge: symptom-checker and check-in chatbot for telemedicine."""
    from bot import logs

    logs.configure(verbose=verbose, json_lines=log_format == "json")
    if ctx.invoked_subcommand == "nlu":  # the NLU reads only its data files: start fast
        ctx.obj = {}
        return
    from bot.config import load_config

    try:
        ctx.obj = {"config": load_config(config_path)}
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    if log_format is None and ctx.obj["config"].logging.json_lines:
        logs.configure(verbose=verbose, json_lines=True)


def _library(cfg: Config) -> Any:
    from bot.app import load_flows

    try:
        return load_flows(cfg)
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None


def _open_store(cfg: Config, *, probe: bool = False) -> Store:
    """The configured store; with `probe`, one real write must commit. Errors name storage.url."""
    from bot.store import DEFAULT_URL, open_store

    url = cfg.storage_url()
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///") :]).is_dir():
        raise click.ClickException(
            f"storage.url: {url[len('sqlite:///') :]} is a folder; give the path of a database "
            f"file in it (for example {DEFAULT_URL})"
        )
    try:
        store = open_store(url)
    except ConfigError as exc:  # already names storage.url
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(f"storage.url: {exc}") from None
    if probe:
        try:
            store.check_writable()
        except StoreError as exc:
            store.close()
            where = getattr(store, "path", "the database")
            raise click.ClickException(
                f"storage.url: cannot write to {where} ({exc}): is the disk full, or the file "
                "or its folder read-only?"
            ) from None
    return store


# --- chat ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--channel",
    type=click.Choice(["sms", "whatsapp", "telegram", "voice", "ussd"]),
    default="sms",
    show_default=True,
    help="voice: a call as a script of prompts and keys; ussd: a phone's USSD screen.",
)
@click.option("--script", type=click.File("rb"), default=None, help="Patient lines, one per line.")
@click.option("--jsonl", is_flag=True, help="Machine mode: JSON object per reply line.")
@click.option("--as", "address", default="terminal-user", show_default=True, help="Patient id.")
@click.pass_context
def chat(
    ctx: click.Context, channel: str, script: IO[bytes] | None, jsonl: bool, address: str
) -> None:
    """Talk to the bot in the terminal, rendered as CHANNEL would show it."""
    from bot.app import CareBridge
    from bot.messages import Inbound
    from bot.phones import inbound_address

    cfg = _config(ctx)
    address = inbound_address(channel, address, cfg.phones.default_region)
    library = _library(cfg)
    try:
        app = CareBridge(cfg, library=library, store=_open_store(cfg))
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    lines = script if script is not None else sys.stdin.buffer
    where = script.name if script is not None and hasattr(script, "name") else "stdin"
    interactive = script is None and sys.stdin.isatty() and not jsonl
    if channel in ("voice", "ussd"):
        if jsonl:
            app.close()
            raise click.UsageError("--jsonl is for text channels; voice and ussd show a call")
        try:
            live_chat(app, cfg, channel, address, _lines(lines, interactive, where))
        finally:
            app.close()
        return
    try:
        if not jsonl:
            click.echo(f"carebridge chat ({channel}). Type your message; Ctrl-D to leave.\n")
            _show_pending(app, channel, address)
        for n, line in enumerate(_lines(lines, interactive, where)):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if script is not None and not jsonl:
                click.echo(f"> {text}")
            stamp = app.clock().strftime("%Y%m%d%H%M%S%f")
            inbound = Inbound(channel, address, text, app.clock(), f"chat-{stamp}-{n}")
            handled = app.handle(inbound)
            sent = _deliver(app, handled.contact_id)
            if jsonl:
                click.echo(json.dumps(_jsonl_state(app, handled, sent)))
            else:
                for out in sent:
                    click.echo(render_text(out, channel) + "\n")
    finally:
        app.close()


def live_chat(app: Any, cfg: Config, channel: str, address: str, lines: Iterator[str]) -> None:
    """A call or a USSD session in the terminal, through the same steps as the webhooks:
    voice as a script (BOT: what is said, KEYS/SAYS: what the patient did, WAIT, DIAL, HANG
    UP); USSD as the phone's screen. Keys are digits, * and #; on a call anything else is
    speech; `!hangup` drops the call or the USSD session; after an end the next line dials."""
    from bot.live import Live
    from bot.live_sim import SimCall, SimUssd
    from channels.ussd import Pages, phone_screen

    live = Live(app, channel)
    call = SimCall(live, cfg, address)
    ussd = SimUssd(live, cfg, address, Pages())

    def dial() -> None:
        if channel == "voice":
            for shown in call.dial():
                click.echo(shown)
        else:
            click.echo("--- dial ---")
            click.echo(phone_screen(ussd.dial()))

    dial()
    for line in lines:
        text = line.strip()
        if not text:
            continue
        is_open = call.open if channel == "voice" else ussd.open
        if not is_open or text == "!hangup":
            click.echo("(the line is closed)" if text == "!hangup" else "")
            dial()
            continue
        if channel == "ussd":
            click.echo(f"KEYS: {text}")
            click.echo(phone_screen(ussd.press(text)))
            continue
        for shown in call.press(text):
            click.echo(shown)


def render_text(out: Outbound, channel: str) -> str:
    """How the reply looks on CHANNEL (SMS and WhatsApp: numbered options; Telegram: buttons)."""
    from channels.render import render

    shown = render(out, channel)
    buttons = "  ".join(f"[{b.label}]" for b in shown.buttons)
    return f"{shown.text}\n{buttons}" if buttons else shown.text


def _lines(stream: IO[bytes], interactive: bool, where: str) -> Iterator[str]:
    """Lines of UTF-8 text; a line that is not UTF-8 stops the chat with one clear error (the
    lines before it were handled and stored)."""
    number = 0
    while True:
        if interactive:
            click.echo("> ", nl=False)
        raw = stream.readline()
        if not raw:
            return
        number += 1
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise click.ClickException(
                f"{where}: line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                f"byte {exc.start + 1}); send UTF-8 text"
            ) from None


def _show_pending(app: Any, channel: str, address: str) -> None:
    """Show what the bot queued for this patient meanwhile (an enrollment's consent question,
    a check-in); otherwise, after a restart, the question the patient was last asked."""
    from bot import engine

    contact = app.store.find_contact(channel, address)
    if contact is None:
        return
    waiting = _deliver(app, contact.id)
    for out in waiting:
        click.echo(render_text(out, channel) + "\n")
    if waiting:
        return
    session = app.store.current_session(contact)
    if engine.expectation(app.library, session) is None:
        return
    last = [t for t in app.store.transcript(contact.id) if t.direction == "out"]
    if last:
        click.echo("(continuing where you left off)\n" + last[-1].text + "\n")


def _deliver(app: Any, contact_id: int | None) -> list[Outbound]:
    """The terminal is this contact's channel: take its queued replies and mark them sent."""
    from bot.store import OutboxStatus

    if contact_id is None:
        return []
    out = []
    now = app.clock()
    for row in app.store.outbox(contact_id=contact_id, status=OutboxStatus.QUEUED):
        out.append(row.outbound)
        app.store.mark_sent(row.id, f"terminal-{row.id}", now)
    return out


def _jsonl_state(app: Any, handled: Any, sent: list[Outbound]) -> dict[str, Any]:
    from bot import engine
    from bot.events import EscalationOpened, RedFlagRaised

    session = handled.session
    exp = engine.expectation(app.library, session) if session else None
    return {
        "replies": [o.text for o in sent],
        "expecting": None
        if exp is None
        else {
            "concept": exp.concept,
            "type": str(exp.type),
            "choices": [o.labels[0] for o in exp.options],
        },
        "flow": session.flow if session else None,
        "triage": session.triage if session else None,
        "red_flags": sorted(
            {c for e in handled.events if isinstance(e, RedFlagRaised) for c in e.concepts}
        ),
        "escalated": any(isinstance(e, EscalationOpened) for e in handled.events),
        "status": str(session.status) if session else ("duplicate" if handled.duplicate else None),
    }


# --- triage -------------------------------------------------------------------------------------


def _read_facts(source: str) -> dict[str, Any]:
    import yaml

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        facts = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{source}: cannot read facts: {exc}") from None
    if not isinstance(facts, dict):
        raise click.ClickException(f"{source}: facts must be a mapping of concept -> value")
    return facts


def _check_facts(lib: Any, facts: dict[str, Any], where: str) -> None:
    """One line naming every bad fact (concept and problem), before anything runs."""
    from bot.simulate import fact_problems

    problems = fact_problems(lib, facts)
    if problems:
        raise click.ClickException(f"{where}: bad facts: {'; '.join(problems)}")


@main.command("triage")
@click.option("--flow", "flow_id", required=True, help="Flow id, e.g. covid_screening.")
@click.option("--facts", "facts_src", required=True, help="YAML/JSON facts file, or - for stdin.")
@click.option("--lang", default="en", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def triage_cmd(ctx: click.Context, flow_id: str, facts_src: str, lang: str, as_json: bool) -> None:
    """Run a flow as a simulated patient answering from FACTS; print the triage level."""
    from bot.simulate import simulate

    lib = _library(_config(ctx))
    if flow_id not in lib.flows:
        raise click.ClickException(
            f"unknown flow '{flow_id}' (have: {', '.join(sorted(lib.flows))})"
        )
    facts = _read_facts(facts_src)
    _check_facts(lib, facts, facts_src)
    result = simulate(lib, flow_id, facts, lang)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
    else:
        click.echo(f"{flow_id}: {result.triage}" + (" (escalated)" if result.escalated else ""))


# --- flows ------------------------------------------------------------------------------------


@main.group()
def flows() -> None:
    """Validate, test and draw flows."""


@flows.command("validate")
@click.pass_context
def flows_validate(ctx: click.Context) -> None:
    """Load every flow file and report every problem at once (with the voice and USSD checks)."""
    cfg = _config(ctx)
    lib = _library(cfg)
    errors, warnings = live_text_problems(lib, cfg.ussd.max_chars)
    for line in warnings:
        click.echo(f"warning: {line}")
    if errors:
        raise click.ClickException("\n".join(errors))
    click.echo(f"ok: {len(lib.flows)} flows ({', '.join(sorted(lib.flows))})")


def live_text_problems(lib: Any, ussd_max_chars: int) -> tuple[list[str], list[str]]:
    """The flow texts that do not work on the live channels (docs/flows.md, `spoken:`):
    errors: a sentence or choice too long for one USSD screen with its navigation lines
    (pages break only between sentences and choices); warnings: a text with something a
    voice reads badly (a URL, an emoji, °, a unit like mg/dL, a reading like 120/80) and no
    `spoken:` variant in that language."""
    from bot.loader import written_texts
    from bot.messages import Outbound
    from channels.ussd import content_limit, too_long, units
    from channels.voice import unspeakable

    errors: list[str] = []
    warnings: list[str] = []
    for item in written_texts(lib):
        pieces = units([Outbound("ussd", "-", item.text, item.choices)])
        room = content_limit(item.language, ussd_max_chars)
        for piece in too_long(pieces, item.language, ussd_max_chars):
            errors.append(
                f"{item.where}: {len(piece)} characters in one sentence or choice; a USSD "
                f"screen has room for {room} (split the sentence)"
            )
        found = unspeakable(item.text)
        if found and not item.spoken:
            warnings.append(
                f"{item.where}: reads badly aloud ({' '.join(found)}); add a `spoken:` "
                f"variant in '{item.language}'"
            )
    return errors, warnings


@flows.command("test")
@click.option("--dir", "tests_dir", type=click.Path(file_okay=False), default=None)
@click.pass_context
def flows_test(ctx: click.Context, tests_dir: str | None) -> None:
    """Run every vignette in flows/tests/*.yaml; fail on any mismatch."""
    import yaml

    from bot.simulate import fact_problems, simulate

    cfg = _config(ctx)
    lib = _library(cfg)
    folder = Path(tests_dir) if tests_dir else cfg.path(cfg.flows.dir) / "tests"
    passed, failed = 0, []
    for path in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        flow_id = str(doc.get("flow"))
        if flow_id not in lib.flows:
            failed.append(f"{path}: unknown flow '{flow_id}'")
            continue
        for i, case in enumerate(doc.get("cases") or []):
            name = case.get("name", f"case {i}")
            facts = case.get("facts") or {}
            problems = fact_problems(lib, facts)
            if problems:
                failed.append(f"{path}: {name}: bad facts: {'; '.join(problems)}")
                continue
            got = simulate(lib, flow_id, facts).triage
            if got == case.get("expect"):
                passed += 1
            else:
                failed.append(f"{path}: {name}: expected {case.get('expect')}, got {got}")
    for line in failed:
        click.echo(f"FAIL {line}")
    click.echo(f"{passed} passed, {len(failed)} failed")
    if failed or not passed:
        ctx.exit(1)


@flows.command("graph")
@click.argument("flow_id")
@click.pass_context
def flows_graph(ctx: click.Context, flow_id: str) -> None:
    """Print FLOW_ID as a Mermaid flowchart."""
    lib = _library(_config(ctx))
    if flow_id not in lib.flows:
        raise click.ClickException(f"unknown flow '{flow_id}'")
    click.echo(mermaid(lib.flows[flow_id]))


def mermaid(flow: Flow) -> str:
    """A Mermaid flowchart of one flow, for reviewers."""
    from bot.flow import AskNode, ClassifyNode, EndNode, EnterNode, EscalateNode, TriageNode

    lines = ["flowchart TD"]
    for node in flow.nodes.values():
        label = type(node).__name__.removesuffix("Node").lower()
        if isinstance(node, AskNode):
            label = f"ask {'/'.join(node.concepts)}"
        elif isinstance(node, TriageNode):
            label = "triage"
        elif isinstance(node, ClassifyNode):
            label = f"classify {node.concept}"
        elif isinstance(node, EnterNode):
            label = f"enter {node.flow}"
        elif isinstance(node, EscalateNode):
            label = f"escalate {node.level}"
        lines.append(f'    {node.id}["{node.id}: {label}"]')
        if isinstance(node, EndNode):
            continue
        for case in node.next:
            arrow = " -->|when| " if case.when is not None else " --> "
            lines.append(f"    {node.id}{arrow}{case.goto}")
        if isinstance(node, TriageNode):
            for level, outcomes in node.outcomes.items():
                for o in outcomes:
                    if o.next:
                        lines.append(f"    {node.id} -->|{level}| {o.next}")
    return "\n".join(lines)


# --- server -----------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address (default server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default server.port, 8000).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the web app: webhooks, the console, the simulator at /, and (unless
    `carebridge worker` processes do: processes.worker) the dispatcher and the sweeps.

    Prints that it is ready only when /readyz would answer 200."""
    import asyncio

    import uvicorn

    from bot.app import CareBridge
    from bot.web import create_app

    cfg = _config(ctx)
    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    # the bind address decides whether the simulator is on (Config.simulator_on)
    cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"host": host})})
    sock = _listen(host, port)  # first: a port in use fails before anything loads
    try:
        library = _library(cfg)  # fail fast, with every flow problem listed
        store = _open_store(cfg, probe=True)
        inline = not cfg.separate_worker()  # else `carebridge worker` dispatches and sweeps
        try:
            bridge = CareBridge(cfg, library=library, store=store)
            app = create_app(cfg, bridge=bridge, dispatch=inline, schedule=inline)
        except CarebridgeError as exc:
            store.close()
            raise click.ClickException(str(exc)) from None
    except BaseException:
        sock.close()
        raise
    url = f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"
    click.echo(f"carebridge is starting on {url} (waiting for the database, flows and NLU)")
    if cfg.simulator_on():
        hint = f"open {url} to chat"
    else:
        from bot.app import channels_off

        hint = f"the console is at {url}console"
        click.echo(f"the browser simulator is off: {channels_off(cfg, {}).get('web', '')}")
    if not inline:
        click.echo("replies and sweeps are left to `carebridge worker` (processes.worker)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(_serve(server, sock, app, hint))
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly; not an error
        click.echo("carebridge stopped")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one clear error naming the setting."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror}); "
            "check --host or server.host in the config file"
        ) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = (exc.strerror or str(exc)).lower()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {why}; choose another with --port "
            "(or server.port in the config file), or stop what is using it"
        ) from None
    sock.set_inheritable(True)
    return sock


async def _serve(server: Any, sock: socket.socket, app: Any, hint: str) -> None:
    """Run uvicorn on `sock`; print the ready line once /readyz's checks all pass, and say
    what is still missing if that takes long."""
    import asyncio
    import time

    from bot.readiness import not_ready
    from bot.worker import Heartbeat

    readiness = app.state.web.readiness
    bridge = app.state.web.bridge
    beating = asyncio.Event()
    heart = Heartbeat(bridge, "serve", bridge.config.processes.heartbeat_s)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    task.add_done_callback(lambda _: beating.set())
    beats = asyncio.create_task(heart.run(beating))
    started, warned = time.monotonic(), False
    while not task.done():
        await asyncio.wait({task}, timeout=0.1)
        if task.done() or not server.started:
            continue
        waiting = not_ready(checks := await readiness.check())
        if not waiting:
            took = time.monotonic() - started
            click.echo(f"carebridge is ready ({took:.1f} s): {hint} (Ctrl-C to stop)")
            break
        if not warned and time.monotonic() - started > 30:
            shown = "; ".join(f"{name}: {checks[name]}" for name in waiting)
            click.echo(f"carebridge is not ready yet: {shown}", err=True)
            warned = True
    try:
        await task
    finally:
        beating.set()
        await beats


@main.command()
@click.option("--port", type=int, default=None, help="Also answer /healthz and /readyz here.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address for --port.")
@click.option("--status", is_flag=True, help="Print the processes, sweeps and queues; exit.")
@click.pass_context
def worker(ctx: click.Context, port: int | None, host: str, status: bool) -> None:
    """Run the outbox dispatcher, the scheduled sweeps and the broadcast fan-out without the
    web app; any number beside any number of `serve` processes (docs/deploy.md)."""
    import asyncio
    import signal

    cfg = _config(ctx)
    if status:
        store = _open_store(cfg)
        try:
            click.echo(json.dumps(work_status(store), indent=2))
        finally:
            store.close()
        return
    from bot.app import CareBridge
    from bot.worker import Worker, serve_health

    sock = _listen(host, port) if port is not None else None
    try:
        library = _library(cfg)
        store = _open_store(cfg, probe=True)
        try:
            bridge = CareBridge(cfg, library=library, store=store)
        except CarebridgeError as exc:
            store.close()
            raise click.ClickException(str(exc)) from None
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    if not cfg.separate_worker():
        click.echo(
            "note: processes.worker is inline here, so `carebridge serve` dispatches and "
            "sweeps as well (safe: both claim their work in the store)"
        )

    async def run() -> None:
        job = Worker(bridge)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, job.stop.set)
        web = asyncio.create_task(serve_health(job, sock)) if sock is not None else None
        try:
            await job.run(lambda: click.echo("carebridge worker is ready (Ctrl-C to stop)"))
        finally:
            if web is not None:
                await web

    try:
        asyncio.run(run())
    finally:
        bridge.close()
    click.echo("carebridge worker stopped")


def work_status(store: Any) -> dict[str, Any]:
    """The processes' heartbeats, the sweep leases and the outbox depth per channel and lane
    (what `carebridge worker --status` prints; ids and times only)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "processes": [
            {
                "name": w.name,
                "kind": w.kind,
                "seen_s_ago": round((now - w.seen_at).total_seconds(), 1),
                "stopped": w.stopped_at is not None,
            }
            for w in store.workers()
        ],
        "sweeps": [
            {
                "name": s.name,
                "holder": s.holder,
                "runs": s.runs,
                "running": s.finished_at is None and s.expires_at > now,
                "last_finished": s.finished_at.isoformat() if s.finished_at else None,
            }
            for s in store.sweep_leases()
        ],
        "queues": [
            {
                "channel": q.channel,
                "lane": q.lane.name.lower(),
                "waiting": q.waiting,
                "oldest_due_s_ago": (
                    round(max(0.0, (now - q.oldest_due_at).total_seconds()), 1)
                    if q.oldest_due_at
                    else None
                ),
            }
            for q in store.queue_depth()
        ],
    }


@main.command("telegram-poll")
@click.pass_context
def telegram_poll(ctx: click.Context) -> None:
    """Development without a public URL: long-poll Telegram instead of a webhook."""
    import asyncio

    from bot.app import CareBridge, build_channels, build_dispatcher
    from channels.telegram import TelegramChannel, parse_telegram_payload

    cfg = _config(ctx)
    senders, off = build_channels(cfg)
    telegram = senders.get("telegram")
    if not isinstance(telegram, TelegramChannel):
        raise click.ClickException(f"telegram is off: {off.get('telegram', 'not configured')}")
    bridge = CareBridge(cfg, library=_library(cfg), store=_open_store(cfg))
    dispatcher = build_dispatcher(cfg, bridge.store, senders)

    async def on_update(payload: dict[str, Any]) -> None:
        assert isinstance(telegram, TelegramChannel)
        if await telegram.on_callback(payload):  # a tick on a multi-select keyboard
            return
        inbound = parse_telegram_payload(payload)
        if inbound is not None:
            await asyncio.to_thread(bridge.handle, inbound)
            dispatcher.wake()

    async def run() -> None:
        await telegram.start()
        stop = asyncio.Event()
        worker = asyncio.create_task(dispatcher.run_forever(stop=stop))
        try:
            await telegram.poll(on_update)
        finally:
            stop.set()
            await worker
            await telegram.stop()
            bridge.close()

    click.echo("polling Telegram (Ctrl-C to stop)")
    asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["main", "mermaid"]
