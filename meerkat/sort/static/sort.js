// meerkat sort: the page. Plain JavaScript, no build step, nothing fetched but this server's API.
"use strict";

const TOKEN = document.querySelector('meta[name="meerkat-token"]').content;
const PAGE = 120; // cards added at a time; the rest wait below "Show more" or a scroll
const $ = (id) => document.getElementById(id);

let items = [];        // the crops still to sort, in the page's order
let shown = 0;         // how many of them have a card
let focus = 0;         // the index of the crop the keys act on
let anchor = null;     // where a Shift selection started
let sortedNow = 0;
let classes = [];
const cards = new Map(); // id -> card element, made once
let queue = Promise.resolve(); // the file-changing requests, one after another

async function call(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Meerkat-Token": TOKEN},
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text) { $("message").textContent = text; }

// An action's problems ({why}) or the session's own (strings: a class folder that is a link).
function problems(list) {
  const ul = $("problems");
  const text = (p) => (typeof p === "string" ? p : p.why);
  ul.replaceChildren(...(list || []).map((p) => Object.assign(document.createElement("li"), {textContent: text(p)})));
}

function keyOf(name) { const c = classes.find((c) => c.name === name); return c && c.key; }

function card(item) {
  let el = cards.get(item.id);
  if (el) return el;
  el = document.createElement("figure");
  el.className = "card";
  el.dataset.id = item.id;
  const img = Object.assign(document.createElement("img"), {src: `/thumb/${item.url}?k=${item.k}`, alt: item.name, loading: "lazy"});
  const caption = document.createElement("figcaption");
  const guess = document.createElement("span");
  guess.className = item.guess ? "guess" : "guess none";
  const key = item.guess && keyOf(item.guess);
  guess.textContent = item.guess ? `${key ? key + " " : ""}${item.guess}` : "no guess";
  caption.append(guess);
  if (item.score !== null) caption.append(Object.assign(document.createElement("span"), {className: "score", textContent: item.score.toFixed(2)}));
  caption.append(Object.assign(document.createElement("span"), {className: "name", textContent: item.name, title: item.name}));
  el.append(img, caption);
  el.addEventListener("click", (e) => select(items.findIndex((i) => i.id === item.id), e.shiftKey));
  el.addEventListener("dblclick", () => view());
  cards.set(item.id, el);
  return el;
}

function render() {
  shown = Math.min(Math.max(shown, PAGE), items.length);
  focus = Math.min(focus, Math.max(0, items.length - 1));
  $("grid").replaceChildren(...items.slice(0, shown).map(card));
  $("more").hidden = shown >= items.length;
  $("finished").hidden = items.length > 0;
  mark();
}

function selectedRange() {
  if (!items.length) return [];
  const from = anchor === null ? focus : Math.min(anchor, focus);
  const to = anchor === null ? focus : Math.max(anchor, focus);
  return items.slice(from, to + 1);
}

function mark() {
  const chosen = new Set(selectedRange().map((i) => i.id));
  for (const [id, el] of cards) {
    el.classList.toggle("selected", chosen.has(id));
    el.classList.toggle("focus", items[focus] !== undefined && items[focus].id === id);
  }
  $("left").textContent = items.length;
  $("sorted").textContent = sortedNow;
}

function select(index, extend) {
  if (index < 0 || index >= items.length) return;
  if (extend) { if (anchor === null) anchor = focus; } else anchor = null;
  focus = index;
  if (focus >= shown) { shown = focus + 1; render(); }
  mark();
  const el = cards.get(items[focus].id);
  if (el) el.scrollIntoView({block: "nearest"});
}

function columns() {
  const grid = [...$("grid").children];
  if (!grid.length) return 1;
  const top = grid[0].offsetTop;
  const n = grid.findIndex((el) => el.offsetTop !== top);
  return n === -1 ? grid.length : n;
}

function update(summary) {
  if (JSON.stringify(summary.classes.map((c) => [c.name, c.key])) !== JSON.stringify(classes.map((c) => [c.name, c.key]))) {
    cards.clear(); // the guesses' key numbers changed
  }
  classes = summary.classes;
  const bar = $("classes");
  bar.replaceChildren(...classes.map((c) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "class";
    b.dataset.name = c.name;
    if (c.key) b.append(Object.assign(document.createElement("kbd"), {textContent: c.key}), " ");
    b.append(c.name, " ", Object.assign(document.createElement("span"), {className: "count", textContent: `(${c.count})`}));
    b.addEventListener("click", (e) => { e.currentTarget.blur(); assign(c.name); });
    return b;
  }));
  $("where").textContent = `${summary.crops} → ${summary.samples}/Training` +
    (summary.source ? ` · guesses from ${summary.source}` : " · no guesses (pass --model to have a model guess)");
  const next = `meerkat run ${summary.samples} OUTPUT`;
  for (const el of document.querySelectorAll(".next")) el.textContent = next;
  const left = $("left-out");
  left.hidden = !summary.left_out_count;
  left.querySelector("summary").textContent = `${summary.left_out_count} files left out`;
  left.querySelector("ul").replaceChildren(...summary.left_out.map(([p, why]) =>
    Object.assign(document.createElement("li"), {textContent: `${p}: ${why}`})));
  if (!classes.length) say("No classes yet: name one in the box above (DeepMeerkat's pair: Positives and Negatives)");
}

async function load() {
  const order = $("order").value;
  const [summary, crops] = await Promise.all([call("/api/summary"), call(`/api/crops?order=${order}`)]);
  update(summary);
  problems(summary.problems);
  items = crops.items;
  cards.clear();
  focus = 0; anchor = null; shown = 0;
  render();
  document.body.dataset.ready = "true"; // for the tests: the first screen is there
}

// Run one file-changing request at a time, in the order the keys were pressed: a key pressed while one is on its
// way waits its turn (never dropped), and acts on the crops selected when its turn comes. body() gives the
// request's body then, or null for nothing to do.
function act(path, body, after) {
  queue = queue.then(async () => {
    const sent = body();
    if (sent === null) return;
    try {
      const data = await call(path, sent);
      problems(data.problems);
      after(data);
      update(data);
      render();
    } catch (e) {
      say(e.message);
    }
  });
}

function remove(ids) {
  const gone = new Set(ids);
  const first = items.findIndex((i) => gone.has(i.id));
  items = items.filter((i) => !gone.has(i.id));
  for (const id of ids) cards.delete(id);
  focus = first === -1 ? focus : first;
  anchor = null;
}

function moved(data) {
  const ids = data.moved.map((m) => m.id).concat(data.problems.filter((p) => p.gone).map((p) => p.id));
  for (const p of data.problems.filter((p) => p.item)) { // changed on disk: shown afresh, to be looked at again
    cards.delete(p.id);
    items = items.map((i) => (i.id === p.id ? p.item : i));
  }
  sortedNow += data.moved.length;
  remove(ids);
  const renamed = data.moved.filter((m) => m.renamed).map((m) => m.to);
  const where = data.moved.length === 1 ? data.moved[0].to : `${data.moved.length} crops`;
  say(data.moved.length ? `Moved ${where}` + (renamed.length ? `; a name was taken, so saved as ${renamed.join(", ")}` : "") : "Nothing moved");
}

// The request's body for the crops selected now, or null for none.
function chosen(extra) {
  const ids = selectedRange().map((i) => i.id);
  return ids.length ? {ids, ...extra} : null;
}

function assign(name) { act("/api/assign", () => chosen({class: name}), moved); }

function accept() { act("/api/accept", () => chosen({}), moved); }

function skip() {
  act("/api/skip", () => chosen({}), (data) => {
    const skipped = new Set(data.skipped);
    const moving = items.filter((i) => skipped.has(i.id));
    const first = items.findIndex((i) => skipped.has(i.id));
    items = items.filter((i) => !skipped.has(i.id)).concat(moving);
    focus = Math.max(0, first); anchor = null;
    say(`Skipped ${moving.length}: ${moving.length === 1 ? "it is" : "they are"} last now`);
  });
}

function undo() {
  act("/api/undo", () => ({}), (data) => {
    const back = data.restored;
    const ids = new Set(back.map((i) => i.id));
    for (const i of back) cards.delete(i.id);
    items = back.concat(items.filter((i) => !ids.has(i.id)));
    sortedNow = Math.max(0, sortedNow - back.length);
    focus = 0; anchor = back.length > 1 ? back.length - 1 : null; // the crops that came back, selected
    say(back.length ? `Undone: ${back.map((i) => i.name).join(", ")} back to sort` : "Nothing was undone");
  });
}

function view() {
  const item = items[focus];
  if (!item) return;
  const dialog = $("viewer");
  dialog.querySelector("img").src = `/crop/${item.url}`;
  dialog.querySelector("p").textContent = item.name;
  dialog.showModal();
}

document.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea, dialog")) return;
  if (e.altKey || e.metaKey) return;
  const k = e.key;
  const across = columns();
  const moves = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across};
  if (e.ctrlKey) { if (k === "z") { e.preventDefault(); undo(); } return; }
  if (k in moves) { e.preventDefault(); select(Math.max(0, Math.min(items.length - 1, focus + moves[k])), e.shiftKey); }
  else if (k === "Home") select(0, e.shiftKey);
  else if (k === "End") select(items.length - 1, e.shiftKey);
  else if (/^[1-9]$/.test(k)) { const c = classes.find((c) => c.key === Number(k)); if (c) assign(c.name); }
  else if (k === "Enter" || k === "a") { e.preventDefault(); accept(); }
  else if (k === "s" || k === " ") { e.preventDefault(); skip(); }
  else if (k === "u" || k === "Backspace") { e.preventDefault(); undo(); }
  else if (k === "v") view();
  else if (k === "Escape") { anchor = null; mark(); }
});

// A clicked button lets go of the focus, so that Enter or Space next is a key of the page, not a second click.
for (const [id, fn] of [["accept", accept], ["skip", skip], ["undo", undo]]) {
  $(id).addEventListener("click", (e) => { e.currentTarget.blur(); fn(); });
}
$("more").addEventListener("click", () => { shown += PAGE; render(); });
$("order").addEventListener("change", () => { load().catch((e) => say(e.message)); $("order").blur(); });
$("new-class").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("new-class-name");
  const name = input.value;
  act("/api/class", () => ({name}), (data) => { say(data.message); input.value = ""; input.blur(); });
});
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && shown < items.length) { shown += PAGE; render(); }
}).observe($("more-row"));

load().catch((e) => say(e.message));
