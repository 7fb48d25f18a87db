// The browser simulator's "Voice call" and "USSD" styles (served at /sim/live.js; no inline
// code): a call shown as a script of prompts and keys, a USSD session as a phone screen. Each
// step is POST /sim/api/live, which runs the webhooks' own steps on this test contact.
(() => {
  const styleSel = document.getElementById("style"), phone = document.getElementById("phone");
  const log = document.getElementById("log"), form = document.getElementById("send");
  const live = document.getElementById("live"), scriptBox = document.getElementById("script");
  const screen = document.getElementById("screen"), chars = document.getElementById("chars");
  const keyed = document.getElementById("keyed"), notice = document.getElementById("notice");
  const keypad = document.getElementById("keypad");
  let oneKey = false, open = false;
  const isLive = () => styleSel.value === "voice" || styleSel.value === "ussd";
  const address = () => document.getElementById("address").textContent;

  function line(text) {
    const div = document.createElement("div");
    div.className = "line" + (text.startsWith("KEYS:") || text.startsWith("SAYS:") ? " keys" : "")
      + (text.startsWith("DIAL") ? " dial" : "");
    div.textContent = text; scriptBox.appendChild(div); live.scrollTop = live.scrollHeight;
  }
  async function step(action, text) {
    notice.textContent = "";
    const r = await fetch("/sim/api/live", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({address: address(), style: styleSel.value, action, text: text || ""})});
    let data = {};
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) { notice.textContent = data.error || "The keys were not sent."; return; }
    open = data.open;
    if (styleSel.value === "voice") {
      for (const l of data.lines) {
        line(l);
        if (l.startsWith("WAIT:")) oneKey = l.includes("one key");
      }
      if (!open && action !== "hangup") line("(the simulated call is over: Dial to call again)");
    } else {
      screen.textContent = data.screen;
      chars.textContent = `${data.chars}/182 characters  ` +
        (data.kind === "CON" ? "(CON: waiting for your reply)" : "(END: session closed; Dial to resume)");
    }
  }
  function sendKeyed() {
    const t = keyed.value.trim(); if (!t) return; keyed.value = "";
    step(open ? "keys" : "dial", t);
  }
  for (const k of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
    const b = document.createElement("button"); b.type = "button"; b.textContent = k;
    b.dataset.key = k;
    b.onclick = () => {
      if (styleSel.value === "voice" && (oneKey || k === "#")) {
        const t = k === "#" ? keyed.value + "#" : k; keyed.value = ""; step("keys", t);
      } else { keyed.value += k; }
    };
    keypad.appendChild(b);
  }
  document.getElementById("dial").onclick = () => step("dial");
  document.getElementById("hangup").onclick = () => step("hangup");
  document.getElementById("keysend").onclick = sendKeyed;
  keyed.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendKeyed(); } });
  function show() {
    const on = isLive();
    live.hidden = !on; log.hidden = on; form.hidden = on;
    screen.hidden = chars.hidden = styleSel.value !== "ussd";
    scriptBox.hidden = styleSel.value !== "voice";
    scriptBox.textContent = ""; screen.textContent = ""; chars.textContent = "";
    open = false; oneKey = false;
  }
  styleSel.addEventListener("change", show);
  document.getElementById("reset").addEventListener("click", show);
  show();
})();
