// Blind A/B review view. The Python session holds all state; this module only renders
// the `state` trait and forwards clicks and keys. Model outputs are untrusted text:
// every string goes through textContent, never innerHTML.

function node(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function fill(el, segments) {
  el.replaceChildren();
  for (const [text, changed] of segments || []) {
    el.appendChild(node("span", changed ? "llmops-rv-diff" : "llmops-rv-same", text));
  }
}

function render({ model, el }) {
  const root = node("div", "llmops-rv");
  root.tabIndex = 0;
  // JupyterLab: keys typed here are ours, not notebook command-mode shortcuts.
  root.setAttribute("data-lm-suppress-shortcuts", "true");

  const head = node("div", "llmops-rv-head");
  const progress = node("span", "llmops-rv-progress");
  const bar = node("progress", "llmops-rv-bar");
  const reviewer = node("span", "llmops-rv-reviewer");
  head.append(progress, bar, reviewer);

  const prompt = node("div", "llmops-rv-prompt");
  const cols = node("div", "llmops-rv-cols");
  const sides = {};
  for (const side of ["left", "right"]) {
    const col = node("div", "llmops-rv-col llmops-rv-" + side);
    const label = node("div", "llmops-rv-label");
    const text = node("div", "llmops-rv-text");
    col.append(label, text);
    cols.appendChild(col);
    sides[side] = { col, label, text };
  }

  const buttons = node("div", "llmops-rv-buttons");
  const send = (msg) => model.send(msg);
  const note = node("input", "llmops-rv-note");
  note.type = "text";
  note.placeholder = "note (n to focus, Enter to leave)";
  const vote = (choice) => {
    send({ action: "vote", choice, note: note.value });
    note.value = "";
  };
  const spec = [
    ["← prev", () => send({ action: "move", step: -1 })],
    ["1 left better", () => vote("left")],
    ["2 right better", () => vote("right")],
    ["3 tie", () => vote("tie")],
    ["s skip", () => vote("skip")],
    ["next →", () => send({ action: "move", step: 1 })],
    ["↻ refresh", () => send({ action: "refresh" }), "read the other reviewers' votes again, send pending feedback"],
  ];
  for (const [label, fn, title] of spec) {
    const b = node("button", "llmops-rv-button", label);
    b.type = "button";
    if (title) b.title = title;
    b.addEventListener("click", () => {
      fn();
      root.focus();
    });
    buttons.appendChild(b);
  }
  buttons.appendChild(note);

  const reveal = node("div", "llmops-rv-reveal");
  const tally = node("div", "llmops-rv-tally");
  // Per-reviewer win rates and the agreement, once a second reviewer has voted.
  const summary = node("div", "llmops-rv-summary");
  const error = node("div", "llmops-rv-error");
  root.append(head, prompt, cols, buttons, reveal, tally, summary, error);
  el.appendChild(root);

  root.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target === note) {
      if (ev.key === "Enter" || ev.key === "Escape") {
        ev.preventDefault();
        root.focus();
      }
      ev.stopPropagation();
      return;
    }
    const keys = (model.get("state") || {}).keys || [];
    if (ev.key === "n") {
      note.focus();
    } else if (keys.includes(ev.key)) {
      const choice = { "1": "left", "2": "right", "3": "tie", s: "skip" }[ev.key];
      if (choice) vote(choice);
      else send({ action: "key", key: ev.key });
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
  });

  function update() {
    const s = model.get("state") || {};
    const c = s.case || {};
    const t = s.tally || {};
    progress.textContent = `case ${s.position || 0} of ${s.total || 0} (id ${c.id ?? ""})` +
      (s.done ? " · all reviewed" : "");
    bar.max = t.total || 1;
    bar.value = t.reviewed || 0;
    prompt.textContent = c.prompt || "";
    fill(sides.left.text, c.left_segments);
    fill(sides.right.text, c.right_segments);
    sides.left.label.textContent = c.left_label || "Left";
    sides.right.label.textContent = c.right_label || "Right";
    for (const side of ["left", "right"]) {
      sides[side].col.classList.toggle("llmops-rv-voted", c.vote === side);
    }
    const mine = c.revealed ? `your verdict: ${c.vote} (${c.winner})${c.note ? " · note: " + c.note : ""}` : "";
    reveal.textContent = [s.last ? s.last.text : "", mine].filter(Boolean).join(" · ");
    tally.textContent = t.text || "";
    reviewer.textContent = s.reviewer ? `reviewer: ${s.reviewer}` : "";
    const lines = (s.summary && s.summary.lines) || [];
    summary.replaceChildren(...lines.map((line) => node("div", "llmops-rv-summary-line", line)));
    const pending = (s.feedback && s.feedback.pending) || 0;
    reviewer.title = pending ? `${pending} feedback(s) not yet in MLflow (kept in the spool)` : "";
    error.textContent = s.error || s.sync_error || "";
  }
  model.on("change:state", update);
  update();
  root.focus();
  return () => model.off("change:state", update);
}

export default { render };
