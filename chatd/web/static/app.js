// chatd's chat page. The socket speaks JSON (docs/web.md); every string that comes from
// the server or from other people is put on the page with textContent, never as HTML.
"use strict";

const NICK_KEY = "chatd.nick";   // the nick set with /nick, taken again on the next visit
const MAX_LINES = 2000;          // older lines leave the page, so a long day stays fast
const MAX_DELAY = 30;            // seconds between reconnection attempts, at most
const NEAR_BOTTOM = 40;          // pixels: closer than this to the end counts as "at the end"

const $ = (id) => document.getElementById(id);
const log = $("log");
const box = $("box");
const statusBar = $("status");
const jump = $("jump");

const me = {
  nick: null,         // as the server last said
  room: null,
  server: "chatd",
  wantRoom: null,     // the room to go back to after a reconnection
  restored: false,    // this connection has asked for the saved nick and room
  quit: false,        // the user typed /quit: no reconnecting until they type again
  kicked: false,      // an operator kicked this connection: the same, said differently
};
let members = new Map();   // key (lower case) -> {nick, away}
let roomList = [];
let socket = null;
let attempt = 0;           // failed connections in a row, for the backoff
let countdown = null;
let sentLines = [];        // what was typed, for the up and down arrows
let recall = 0;

// --- The page ------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pad(n) { return String(n).padStart(2, "0"); }

function timeElement(at) {
  const when = at === undefined ? new Date() : new Date(at * 1000);
  const today = new Date().toDateString() === when.toDateString();
  const clock = `${pad(when.getHours())}:${pad(when.getMinutes())}`;
  const label = today ? clock
    : `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ${clock}`;
  const node = el("time", null, label);
  node.dateTime = when.toISOString();
  return node;
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM;
}

function scrollToEnd() {
  log.scrollTop = log.scrollHeight;
  jump.hidden = true;
}

// One line in the log: a time, then parts that are each [className, text] or a string.
function addLine(kind, at, parts, extraClass) {
  const follow = atBottom();
  const line = el("p", `line ${kind}${extraClass ? " " + extraClass : ""}`);
  line.append(timeElement(at));
  for (const part of parts) {
    if (typeof part === "string") line.append(document.createTextNode(part));
    else line.append(el("span", part[0], part[1]));
  }
  log.append(line);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  if (follow) scrollToEnd();
  else jump.hidden = false;
}

function setStatus(text, trouble) {
  statusBar.textContent = text;
  statusBar.classList.toggle("trouble", Boolean(trouble));
}

function mentions(text) {
  if (!me.nick) return false;
  const escaped = me.nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\p{L}\\p{N}_-])${escaped}($|[^\\p{L}\\p{N}_-])`, "iu").test(text);
}

function showTopic() {
  const room = roomList.find((r) => r.name === me.room);
  const topic = room && room.topic ? room.topic : "";
  $("topic").textContent = me.room ? (topic ? `${me.room}: ${topic}` : me.room) : "";
  document.title = me.room ? `${me.room} – ${me.server}` : me.server;
}

function renderRooms() {
  const list = $("room-list");
  list.replaceChildren();
  for (const room of roomList) {
    const button = el("button", null, room.name);
    button.type = "button";
    button.append(" ", el("span", "count", `(${room.users})`));
    if (room.topic) button.title = room.topic;
    if (room.name === me.room) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => {
      if (room.name !== me.room) send(`/join ${room.name}`);
      box.focus();
    });
    const item = el("li");
    item.append(button);
    list.append(item);
  }
  showTopic();
}

function renderMembers() {
  const list = $("member-list");
  list.replaceChildren();
  const sorted = [...members.values()].sort((a, b) =>
    a.nick.toLowerCase() < b.nick.toLowerCase() ? -1 : 1);
  for (const person of sorted) {
    const button = el("button", null, person.nick);
    button.type = "button";
    button.title = `Send ${person.nick} a private message`;
    if (person.away) button.append(" ", el("span", "away", "(away)"));
    if (person.nick === me.nick) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => {
      box.value = `/msg ${person.nick} `;
      box.focus();
    });
    const item = el("li");
    item.append(button);
    list.append(item);
  }
  $("people-title").textContent = `People in ${me.room || "the room"} (${members.size})`;
}

// --- What the server sends -----------------------------------------------------------------

const handlers = {
  state(m) {
    const renamed = me.nick !== null && m.nick !== me.nick;
    me.nick = m.nick;
    me.room = m.room;
    me.server = m.server;
    $("title").textContent = m.server;
    if (renamed) localStorage.setItem(NICK_KEY, m.nick);  // only a /nick, never a guest nick
    if (!me.restored) restore();
    me.wantRoom = m.room;
    renderRooms();
    renderMembers();
  },
  said(m) {
    addLine("said", m.at, [["nick", `<${m.nick}>`], " ", ["text", m.text]],
      classes(m, mentions(m.text) && m.nick !== me.nick ? "mention" : ""));
  },
  acted(m) {
    addLine("acted", m.at, ["* ", ["nick", m.nick], " ", ["text", m.text]],
      classes(m, mentions(m.text) && m.nick !== me.nick ? "mention" : ""));
  },
  private(m) {
    const what = m.action ? ["* ", ["nick", m.from], " ", ["text", m.text]] : [["text", m.text]];
    addLine("private", m.at, [["tag", "private"], ["nick", `*${m.from}*`], " ", ...what]);
  },
  sent(m) {
    addLine("sent", m.at, [["tag", "private"], `-> `, ["nick", `*${m.to}*`], " ", ["text", m.text]]);
  },
  joined(m) {
    if (m.room === me.room) {
      members.set(m.nick.toLowerCase(), { nick: m.nick, away: false });
      renderMembers();
    }
    addLine("joined", m.at, [`*** ${m.nick} has joined ${m.room}`]);
  },
  left(m) {
    if (m.room === me.room) {
      members.delete(m.nick.toLowerCase());
      renderMembers();
    }
    // quit: they left the chat altogether, not only this room
    const what = m.quit ? "has quit" : `has left ${m.room}`;
    addLine("left", m.at, [`*** ${m.nick} ${what} (${m.reason})`]);
  },
  kicked(m) {
    if (!m.room) {  // this connection was kicked; the server closes it next
      addLine("announcement", m.at, [`*** You have been kicked by ${m.by}: ${m.reason}`]);
      me.quit = me.kicked = true;  // coming straight back would only be refused
      return;
    }
    if (m.room === me.room) {
      members.delete(m.nick.toLowerCase());
      renderMembers();
    }
    addLine("left", m.at, [`*** ${m.nick} has left ${m.room} (kicked by ${m.by}: ${m.reason})`]);
  },
  renamed(m) {
    const old = members.get(m.old.toLowerCase());
    if (old) {
      members.delete(m.old.toLowerCase());
      members.set(m.new.toLowerCase(), { nick: m.new, away: old.away });
      renderMembers();
    }
    addLine("renamed", m.at, [`*** ${m.old} is now known as ${m.new}`]);
  },
  topic(m) {
    const room = roomList.find((r) => r.name === m.room);
    if (room) room.topic = m.topic;
    showTopic();
    addLine("topic", m.at, [`*** ${m.nick} set the topic of ${m.room} to: ${m.topic}`]);
  },
  announcement(m) { addLine("announcement", m.at, [`*** ${m.text}`]); },
  room_notice(m) { addLine("room_notice", m.at, [`*** ${m.text}`]); },
  notice(m) { addLine("notice", m.at, [`*** ${m.text}`]); },
  error(m) { addLine("error", m.at, [`*** Error: ${m.text}`]); },
  members(m) {
    if (m.room !== me.room) return;
    members = new Map(m.members.map((p) => [p.nick.toLowerCase(), p]));
    renderMembers();
  },
  rooms(m) {
    roomList = m.rooms;
    renderRooms();
  },
};

function classes(m, extra) {
  return [m.history ? "history" : "", extra].filter(Boolean).join(" ");
}

function receive(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;  // not ours to show
  }
  const handler = Object.hasOwn(handlers, message.type) ? handlers[message.type] : null;
  if (handler) handler(message);
}

// After a (re)connection: take the saved nick again, and go back to the room we were in.
function restore() {
  me.restored = true;
  const saved = localStorage.getItem(NICK_KEY);
  if (saved && saved !== me.nick) send(`/nick ${saved}`);
  if (me.wantRoom && me.wantRoom !== me.room) send(`/join ${me.wantRoom}`);
}

// --- The connection ------------------------------------------------------------------------

function socketUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

function connect() {
  clearInterval(countdown);
  setStatus(attempt ? "Reconnecting…" : "Connecting…", attempt > 0);
  socket = new WebSocket(socketUrl());
  socket.addEventListener("open", () => {
    attempt = 0;
    me.restored = false;
    me.nick = null;
    setStatus(`Connected to ${location.host}`);
  });
  socket.addEventListener("message", receive);
  socket.addEventListener("close", (event) => {
    socket = null;
    members = new Map();
    renderMembers();
    const why = event.reason ? ` (${event.reason})` : "";
    addLine("error", undefined, [`*** Disconnected from the server${why}`]);
    if (me.kicked) setStatus("You were kicked. Press Enter to join again.", true);
    else if (me.quit) setStatus("You left the chat. Press Enter to join again.", true);
    else retryLater();
  });
}

// Backoff: 1, 2, 4 ... 30 seconds, each shortened at random so that a restarted server is
// not hit by every page at the same moment.
function retryLater() {
  const delay = Math.max(1, Math.round(Math.min(MAX_DELAY, 2 ** attempt) * (0.5 + Math.random() / 2)));
  attempt += 1;
  let left = delay;
  const tell = () => setStatus(`Disconnected; reconnecting in ${left} s…`, true);
  tell();
  countdown = setInterval(() => {
    left -= 1;
    if (left <= 0) connect();
    else tell();
  }, 1000);
}

function send(line) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    addLine("error", undefined, ["*** Error: not connected; the line was not sent"]);
    return false;
  }
  socket.send(line);
  return true;
}

// --- The keyboard --------------------------------------------------------------------------

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const line = box.value;
  if (me.quit && !socket) {  // after /quit (or a kick), Enter comes back
    me.quit = me.kicked = false;
    box.value = "";
    connect();
    return;
  }
  if (!line.trim()) return;
  if (send(line)) {
    // Our own lines are not echoed back by the server, so they are shown here.
    if (!line.startsWith("/") || line.startsWith("//")) {
      const text = line.startsWith("//") ? line.slice(1) : line;
      addLine("said own", undefined, [["nick", `<${me.nick || "you"}>`], " ", ["text", text]]);
    } else if (/^\/quit(\s|$)/i.test(line)) {
      me.quit = true;
    } else if (/^\/me\s/i.test(line)) {
      addLine("acted own", undefined, ["* ", ["nick", me.nick || "you"], " ", ["text", line.slice(4)]]);
    }
    sentLines.push(line);
    if (sentLines.length > 100) sentLines.shift();
    recall = sentLines.length;
    box.value = "";
    scrollToEnd();
  }
});

box.addEventListener("keydown", (event) => {
  if (event.key === "ArrowUp" && recall > 0) {
    recall -= 1;
    box.value = sentLines[recall];
    event.preventDefault();
  } else if (event.key === "ArrowDown" && recall < sentLines.length) {
    recall += 1;
    box.value = recall < sentLines.length ? sentLines[recall] : "";
    event.preventDefault();
  }
});

// Escape from anywhere (a room or person button, the log) goes back to the message box.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") box.focus();
});

log.addEventListener("scroll", () => { if (atBottom()) jump.hidden = true; });
jump.addEventListener("click", () => { scrollToEnd(); box.focus(); });

for (const id of ["show-rooms", "show-people"]) {
  const button = $(id);
  button.addEventListener("click", () => {
    const panel = $(button.getAttribute("aria-controls"));
    const open = panel.classList.toggle("open");
    button.setAttribute("aria-expanded", String(open));
  });
}

box.focus();
connect();
