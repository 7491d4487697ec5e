// Parley web client: one ES module, no framework, no build step.
//
// Data flow: REST (/api/v1) loads state (workspaces, conversations, history, threads, search)
// and performs edits, deletes and reactions; the WebSocket (/ws) sends messages, typing and
// read markers, and streams events. Every event is applied to the in-memory state, which then
// re-renders only the nodes it touches.
//
// Safety rule: user data (message text, names, channel names, error messages) reaches the DOM
// only as text nodes / textContent. The single exception is the search `highlight`, which the
// server HTML-escapes around <mark> tags; even that goes through `highlightFragment`, which
// keeps nothing but text and <mark>.

// ---- Small DOM helpers ---------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

/** el("li", {class: "x", onclick: f}, "text", child): strings become text nodes, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A plain button (type=button: it never submits the form around it). */
const button = (content, onclick, attrs = {}) => el("button", { type: "button", onclick, ...attrs }, content);
const icon = (glyph, label, onclick) => button(glyph, onclick, { "aria-label": label, title: label });

/** The search highlight as DOM: parsed inertly, then rebuilt from text and <mark> only. */
function highlightFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html; // inert: scripts and handlers inside a template never run
  const copy = (from, to) => {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) to.append(node.textContent);
      else if (node.nodeName === "MARK") copy(node, to.appendChild(document.createElement("mark")));
      else copy(node, to); // any other element: keep its text, drop the element
    }
    return to;
  };
  return copy(template.content, document.createDocumentFragment());
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const fullDate = (iso) => dateTimeFormat.format(new Date(iso));

let toastTimer = 0;
function toast(text) {
  $("toast").textContent = text;
  $("toast").classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => $("toast").classList.remove("show"), 4000);
}
// Click handlers are async; one place shows whatever they fail with.
window.addEventListener("unhandledrejection", (e) => toast(e.reason?.message || "Something went wrong"));

// ---- REST client ---------------------------------------------------------------------------
/** The API's errors are {"error": {code, message, details?: [{loc, msg}]}}. */
class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error || {};
    const detail = error.details?.[0];
    super(detail ? `${detail.loc.at(-1)}: ${detail.msg}` : error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

const api = {
  token: localStorage.getItem("parley.token"),

  async call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    const response = await fetch(`/api/v1${path}`, init);
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (response.status === 401 && this.token) signOut(); // expired or revoked: back to login
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  },
  get(path) { return this.call("GET", path); },
  post(path, body = {}) { return this.call("POST", path, body); },
  patch(path, body) { return this.call("PATCH", path, body); },
  delete(path) { return this.call("DELETE", path); },
};

// ---- State ---------------------------------------------------------------------------------
const HISTORY_PAGE = 50;
const TYPING_EVERY_MS = 3000; // send at most one typing frame per 3 s
const TYPING_SHOWN_MS = 6000; // a typing notice fades unless renewed
const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "👀", "✅"];

const state = {
  me: null,
  workspaceId: null,
  users: new Map(), // user id → user (members of the open workspace)
  presence: new Map(), // user id → "online" | "away" | "offline"
  conversations: new Map(), // id → entry (see addConversation): the open workspace's, member only
  cursors: new Map(), // conversation id → seq of the last event applied (all workspaces; for resume)
  openId: null,
  threadRootId: null,
  pending: new Map(), // client_msg_id → {frame, failed, createdAt}: sent, not yet acknowledged
  typing: new Map(), // conversation id → Map(user id → {until, threadRootId})
  lastReadSent: new Map(), // conversation id → seq of the last mark_read frame
  maxChars: 4000,
};

const conv = (id) => state.conversations.get(id);
const isDm = (c) => c.kind === "dm" || c.kind === "group_dm";

function userName(id) {
  const user = state.users.get(id);
  if (!user) { refreshMembersSoon(); return "unknown"; }
  return user.display_name || user.username;
}

function convLabel(entry) {
  const c = entry.conversation;
  if (!isDm(c)) return `#${c.name}`;
  const others = (entry.dmMembers || []).filter((id) => id !== state.me.id);
  return others.length ? others.map(userName).join(", ") : "(just you)";
}

function addConversation(conversation, extra = {}) {
  const entry = conv(conversation.id) || {
    messages: new Map(), // id → message: top-level ones and the replies of threads we opened
    hasMore: false, // history has older messages than we hold
    loaded: false, // history fetched; from then on events keep `messages` current
    unread: 0,
    dmMembers: null, // user ids, for naming DMs
  };
  Object.assign(entry, { conversation }, extra);
  state.conversations.set(conversation.id, entry);
  if (!state.cursors.has(conversation.id)) state.cursors.set(conversation.id, conversation.last_seq);
  return entry;
}

// ---- WebSocket: reconnect with backoff, resume, resend unacknowledged sends ----------------
class Realtime {
  ws = null;
  attempt = 0; // failed connects since the last hello: drives the backoff
  ready = false; // true between hello and close: frames sent now reach the server
  stopped = true;
  unauthenticated = false;
  pingTimer = 0;
  retryTimer = 0;

  start() { this.stopped = false; this.connect(); }

  stop() {
    this.stopped = true;
    this.ready = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close(1000, "logout");
    this.ws = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(api.token)}`);
    this.ws = ws;
    $("connection").textContent = this.attempt ? "Reconnecting…" : "Connecting…";
    ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    ws.onclose = (e) => {
      if (this.ws !== ws || this.stopped) return;
      this.ready = false;
      clearInterval(this.pingTimer);
      if (e.code === 1008 && this.unauthenticated) { signOut(); return; }
      // Exponential backoff with jitter, so a restarted node is not hit by every client at once.
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      $("connection").textContent = "Offline — reconnecting…";
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  send(frame) {
    if (!this.ready) return false; // sends stay in state.pending and go out after the next hello
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  receive(frame) {
    switch (frame.type) {
      case "hello": return this.hello(frame);
      case "ack": return frame.message && storeMessage(frame.message);
      case "error": return this.error(frame);
      case "resync": return resync(frame.conversation_id);
      case "reconnect": return this.ws.close(4000, "server asked to reconnect");
      case "pong": return undefined;
      default: return onEvent(frame);
    }
  }

  hello(frame) {
    Object.assign(this, { attempt: 0, ready: true, unauthenticated: false });
    state.me = frame.user;
    state.maxChars = frame.limits?.max_message_chars || state.maxChars;
    state.presence.set(state.me.id, "online");
    // Resume: tell the server the last seq we applied per conversation; it replays the rest in
    // order, or sends `resync`. Conversations new to us start at the seq the hello reports.
    const cursors = Object.fromEntries(state.cursors);
    for (const { conversation } of frame.conversations) {
      if (conversation.workspace_id === state.workspaceId) addConversation(conversation);
      else if (!state.cursors.has(conversation.id)) state.cursors.set(conversation.id, conversation.last_seq);
    }
    if (Object.keys(cursors).length) this.send({ type: "resume", id: "resume", cursors });
    // Retry sends never acknowledged, with the same client_msg_id: the server answers with
    // the message it stored the first time instead of storing a duplicate.
    for (const item of state.pending.values()) if (!item.failed) this.send(item.frame);
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), 25000); // keeps proxies from idling out
    $("connection").textContent = "";
    // DMs joined while we were away need their members to get a name.
    Promise.all([...state.conversations.values()].map(loadDmMembers)).then(renderConversationList);
    markReadIfVisible();
  }

  error(frame) {
    if (frame.code === "unauthenticated") { this.unauthenticated = true; return; }
    const item = frame.id && state.pending.get(frame.id);
    if (!item) { toast(frame.message || "Something went wrong"); return; }
    if (frame.code === "rate_limited") {
      // Not stored: send the same frame again once the server says we may.
      setTimeout(() => this.send(item.frame), (frame.retry_after || 1) * 1000);
      return;
    }
    item.failed = frame.message;
    renderMessage(pendingMessage(item));
  }
}
const realtime = new Realtime();

// ---- Sending: a message shows as pending until its ack (or its event) arrives --------------
function sendMessage(conversationId, text, threadRootId = null) {
  const id = crypto.randomUUID();
  const frame = { type: "send", id, conversation_id: conversationId, text, client_msg_id: id };
  if (threadRootId) frame.thread_root_id = threadRootId;
  const item = { frame, failed: null, createdAt: new Date().toISOString() };
  state.pending.set(id, item);
  renderMessage(pendingMessage(item));
  realtime.send(frame);
}

/** A pending send, shaped like a message so the same renderer shows it. */
function pendingMessage({ frame: f, failed, createdAt }) {
  return {
    id: `pending-${f.client_msg_id}`, pending: true, failed, clientMsgId: f.client_msg_id,
    conversation_id: f.conversation_id, thread_root_id: f.thread_root_id || null, user_id: state.me.id,
    text: f.text, created_at: createdAt, seq: Number.MAX_SAFE_INTEGER, reactions: [], reply_count: 0,
  };
}

/** A stored message arrived (ack, event or REST reply): it replaces its pending copy. */
function storeMessage(message) {
  if (message.client_msg_id && state.pending.delete(message.client_msg_id)) {
    removeMessageNodes(`pending-${message.client_msg_id}`);
  }
  const entry = conv(message.conversation_id);
  if (!entry?.loaded) return; // its history is fetched when the conversation is opened
  entry.messages.set(message.id, message); // keyed by id: a message is stored and shown once
  renderMessage(message);
}

function retrySend(clientMsgId) {
  const item = state.pending.get(clientMsgId);
  if (!item) return;
  item.failed = null;
  renderMessage(pendingMessage(item));
  realtime.send(item.frame);
}

function discardSend(clientMsgId) {
  state.pending.delete(clientMsgId);
  removeMessageNodes(`pending-${clientMsgId}`);
}

// ---- Events: deduped by seq and applied in seq order, per conversation ---------------------
function onEvent(event) {
  if (event.type === "typing") return onTyping(event);
  if (event.type === "presence") return onPresence(event);
  const id = event.conversation_id;
  if (event.seq !== null && event.seq !== undefined) {
    const last = state.cursors.get(id) ?? event.seq - 1;
    if (event.seq <= last) return undefined; // already applied (a replay after resume)
    state.cursors.set(id, event.seq);
    // The server fills gaps before delivering; should one show anyway, history is the truth.
    if (event.seq > last + 1 && conv(id)?.loaded) resync(id);
  }
  EVENT_HANDLERS[event.type]?.(event.data, id);
  return undefined;
}

const EVENT_HANDLERS = {
  "message.created"({ message: m }, id) {
    storeMessage(m);
    if (m.thread_root_id) refreshReplyCount(id, m.thread_root_id);
    clearTyping(id, m.user_id);
    const entry = conv(id);
    if (!entry || m.user_id === state.me.id || m.thread_root_id) return;
    if (id === state.openId && pageVisible()) markReadIfVisible();
    else { entry.unread += 1; renderConversationList(); }
  },
  "message.edited"({ message }) { storeMessage(message); },
  "message.deleted"({ message }, id) {
    storeMessage(message);
    if (message.thread_root_id) refreshReplyCount(id, message.thread_root_id);
  },
  "reaction.added"(data, id) { applyReaction(id, data, true); },
  "reaction.removed"(data, id) { applyReaction(id, data, false); },
  "member.joined"(data, id) {
    if (data.user_id === state.me.id && data.conversation.workspace_id === state.workspaceId) {
      addConversation(data.conversation);
      renderConversationList();
    } else if (!state.users.has(data.user_id)) refreshMembersSoon();
  },
  "member.left"(data, id) {
    if (data.user_id !== state.me.id) return;
    state.conversations.delete(id);
    if (state.openId === id) closeConversation();
    renderConversationList();
  },
  "conversation.created"(data) {
    if (data.conversation.workspace_id !== state.workspaceId) return;
    addConversation(data.conversation, { dmMembers: data.member_ids });
    renderConversationList();
  },
};

function applyReaction(conversationId, { message_id: messageId, user_id: userId, emoji }, added) {
  const message = conv(conversationId)?.messages.get(messageId);
  if (!message) return;
  // Reactions as sets of user ids make add/remove idempotent: our REST reply and the event
  // that follows it may both be applied.
  const reactions = message.reactions.map((r) => ({ ...r }));
  let reaction = reactions.find((r) => r.emoji === emoji);
  if (!reaction) reactions.push((reaction = { emoji, user_ids: [] }));
  reaction.user_ids = reaction.user_ids.filter((u) => u !== userId).concat(added ? [userId] : []);
  reaction.count = reaction.user_ids.length;
  storeMessage({ ...message, reactions: reactions.filter((r) => r.count > 0) });
}

/** A reply changes its root's reply_count, but no event says so: fetch the root. Fetching
 * (rather than counting locally) stays right when the history we hold already counted it. */
async function refreshReplyCount(conversationId, rootId) {
  if (!conv(conversationId)?.messages.has(rootId)) return;
  storeMessage(await api.get(`/messages/${rootId}`));
}

/** The server could not replay what we missed: drop what we hold and fetch history again. */
async function resync(conversationId) {
  const entry = conv(conversationId);
  if (!entry) return;
  entry.loaded = false;
  entry.messages.clear();
  if (conversationId !== state.openId) return; // fetched when next opened
  await openConversation(conversationId);
  if (state.threadRootId) await openThread(state.threadRootId);
}

// Typing and presence ----------------------------------------------------------------------
let typingSentAt = 0;
function sendTyping(threadRootId) {
  if (!state.openId || Date.now() - typingSentAt < TYPING_EVERY_MS) return;
  typingSentAt = Date.now();
  realtime.send({ type: "typing", conversation_id: state.openId, thread_root_id: threadRootId || undefined });
}

function onTyping({ conversation_id: id, data }) {
  if (data.user_id === state.me.id) return;
  if (!state.typing.has(id)) state.typing.set(id, new Map());
  const until = Date.now() + TYPING_SHOWN_MS;
  state.typing.get(id).set(data.user_id, { until, threadRootId: data.thread_root_id });
  renderTyping();
}

function clearTyping(conversationId, userId) {
  state.typing.get(conversationId)?.delete(userId);
  renderTyping();
}

function typingText(conversationId, threadRootId) {
  const names = [...(state.typing.get(conversationId) || [])]
    .filter(([, t]) => t.until > Date.now() && (t.threadRootId || null) === threadRootId)
    .map(([id]) => userName(id));
  if (names.length > 2) return "Several people are typing…";
  return names.length ? `${names.join(" and ")} ${names.length === 1 ? "is" : "are"} typing…` : "";
}

function renderTyping() {
  $("typing").textContent = state.openId ? typingText(state.openId, null) : "";
  $("thread-typing").textContent = state.threadRootId ? typingText(state.openId, state.threadRootId) : "";
}
setInterval(renderTyping, 1000); // expires stale notices

function onPresence({ data }) {
  state.presence.set(data.user_id, data.status);
  renderConversationList();
}

// Read markers -------------------------------------------------------------------------------
const pageVisible = () => document.visibilityState === "visible";

/** The open conversation counts as read only while the page is visible. */
function markReadIfVisible() {
  const id = state.openId;
  const entry = conv(id);
  if (!entry?.loaded || !pageVisible()) return;
  const seq = state.cursors.get(id) ?? entry.conversation.last_seq;
  if (seq > (state.lastReadSent.get(id) ?? -1) &&
      realtime.send({ type: "mark_read", id: `read-${id}`, conversation_id: id, seq })) {
    state.lastReadSent.set(id, seq);
  }
  if (entry.unread) { entry.unread = 0; renderConversationList(); }
}
document.addEventListener("visibilitychange", markReadIfVisible);

// ---- Loading: session, workspaces, conversations, history, threads -------------------------
async function start() {
  if (!api.token) return showAuth();
  state.me = await api.get("/users/me").catch(() => null);
  if (!state.me) return showAuth();
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  $("me").textContent = state.me.display_name || state.me.username;
  state.presence.set(state.me.id, "online");
  await loadWorkspaces();
  realtime.start();
  return undefined;
}

function showAuth() {
  $("app-view").hidden = true;
  $("auth-view").hidden = false;
  $("auth-username").focus();
}

function signOut() {
  realtime.stop();
  api.token = null;
  localStorage.removeItem("parley.token");
  Object.assign(state, { me: null, workspaceId: null, openId: null, threadRootId: null });
  for (const map of [state.conversations, state.cursors, state.pending, state.lastReadSent]) map.clear();
  showAuth();
}

async function loadWorkspaces(selectId = null) {
  const workspaces = await api.get("/workspaces");
  $("workspace-select").replaceChildren(...workspaces.map((w) => el("option", { value: w.id }, w.name)));
  const wanted = selectId || localStorage.getItem("parley.workspace");
  const chosen = workspaces.find((w) => w.id === wanted) || workspaces[0];
  if (chosen) return selectWorkspace(chosen.id);
  state.workspaceId = null;
  state.conversations.clear();
  renderConversationList();
  closeConversation();
  $("conv-title").textContent = "Welcome! Create a workspace, or join one with an invite code.";
  return undefined;
}

async function selectWorkspace(workspaceId) {
  state.workspaceId = workspaceId;
  $("workspace-select").value = workspaceId;
  localStorage.setItem("parley.workspace", workspaceId);
  closeSide();
  closeConversation();
  const [members, views] = await Promise.all([
    api.get(`/workspaces/${workspaceId}/members`),
    api.get(`/workspaces/${workspaceId}/conversations`),
  ]);
  state.users = new Map(members.map((m) => [m.user.id, m.user]));
  state.conversations.clear();
  // Public channels we are not in are listed too: they show under "Browse channels" instead.
  for (const v of views.filter((view) => view.is_member)) {
    addConversation(v.conversation, { unread: v.unread_count });
  }
  await Promise.all([...state.conversations.values()].map(loadDmMembers));
  renderConversationList();
  const first = conv(localStorage.getItem(`parley.open.${workspaceId}`)) || sortedConversations().channels[0];
  if (first) await openConversation(first.conversation.id);
}

/** DMs have no name: they are named after their members, which the list does not carry. */
async function loadDmMembers(entry) {
  if (!isDm(entry.conversation) || entry.dmMembers) return;
  const users = await api.get(`/conversations/${entry.conversation.id}/members`);
  entry.dmMembers = users.map((u) => u.id);
}

let membersRefreshedAt = 0;
/** A name we do not know (someone joined the workspace after we loaded it): reload members,
 * at most every 10 s, so an id that stays unknown cannot make this loop. */
function refreshMembersSoon() {
  if (!state.workspaceId || Date.now() - membersRefreshedAt < 10000) return;
  membersRefreshedAt = Date.now();
  setTimeout(async () => {
    for (const m of await api.get(`/workspaces/${state.workspaceId}/members`)) state.users.set(m.user.id, m.user);
    renderConversationList();
    if (conv(state.openId)?.loaded) renderMessageList();
  }, 300);
}

async function openConversation(conversationId) {
  const entry = conv(conversationId);
  if (!entry) return;
  if (state.openId !== conversationId) closeSide();
  state.openId = conversationId;
  localStorage.setItem(`parley.open.${state.workspaceId}`, conversationId);
  const label = convLabel(entry);
  $("conv-title").textContent = label;
  $("conv-topic").textContent = entry.conversation.topic || "";
  $("composer").hidden = false;
  $("composer-label").textContent = `Message ${label}`;
  Object.assign($("composer-input"), { placeholder: `Message ${label}`, maxLength: state.maxChars });
  if (!entry.loaded) {
    const page = await api.get(`/conversations/${conversationId}/messages?limit=${HISTORY_PAGE}`);
    if (state.openId !== conversationId) return; // the user moved on meanwhile
    entry.messages = new Map(page.messages.map((m) => [m.id, m]));
    entry.hasMore = page.has_more;
    entry.loaded = true;
  }
  renderConversationList();
  renderMessageList();
  renderTyping();
  markReadIfVisible();
  $("composer-input").focus();
}

function closeConversation() {
  state.openId = null;
  $("conv-title").textContent = "Pick a conversation";
  $("conv-topic").textContent = "";
  $("composer").hidden = true;
  $("message-list").replaceChildren();
  $("load-older").hidden = true;
}

async function loadOlder() {
  const entry = conv(state.openId);
  const seqs = [...entry.messages.values()].filter((m) => !m.thread_root_id).map((m) => m.seq);
  if (!seqs.length) return;
  const box = $("messages");
  const fromBottom = box.scrollHeight - box.scrollTop; // keeps the reader's place
  const query = `before=${Math.min(...seqs)}&limit=${HISTORY_PAGE}`;
  const page = await api.get(`/conversations/${state.openId}/messages?${query}`);
  for (const m of page.messages) entry.messages.set(m.id, m);
  entry.hasMore = page.has_more;
  renderMessageList();
  box.scrollTop = box.scrollHeight - fromBottom;
}

async function openThread(rootId) {
  const { root, replies } = await api.get(`/messages/${rootId}/replies?limit=200`);
  const entry = conv(root.conversation_id);
  if (!entry?.loaded) return;
  state.threadRootId = rootId;
  for (const m of [root, ...replies]) entry.messages.set(m.id, m);
  showSide("Thread");
  $("side-body").replaceChildren(
    el("ol", { id: "thread-list", class: "message-list", role: "log", "aria-label": "Thread replies" }));
  for (const m of [root, ...replies]) renderMessage(m);
  for (const item of state.pending.values()) {
    if (item.frame.thread_root_id === rootId) renderMessage(pendingMessage(item));
  }
  $("thread-composer").hidden = false;
  renderTyping();
  $("thread-input").focus();
}

// ---- Rendering: conversation list ----------------------------------------------------------
function sortedConversations() {
  const all = [...state.conversations.values()].sort((a, b) => convLabel(a).localeCompare(convLabel(b)));
  return { channels: all.filter((e) => !isDm(e.conversation)), dms: all.filter((e) => isDm(e.conversation)) };
}

function renderConversationList() {
  const { channels, dms } = sortedConversations();
  $("channel-list").replaceChildren(...channels.map(conversationItem));
  $("dm-list").replaceChildren(...dms.map(conversationItem));
}

function conversationItem(entry) {
  const c = entry.conversation;
  const other = c.kind === "dm" && (entry.dmMembers || []).find((id) => id !== state.me.id);
  const status = other && (state.presence.get(other) || "offline");
  const unread = c.id === state.openId ? 0 : entry.unread;
  const label = convLabel(entry);
  return el("li", {}, button([
    status && el("span", { class: `dot ${status}`, title: status, "aria-hidden": "true" }),
    c.kind === "private" && el("span", { class: "lock", "aria-hidden": "true" }, "🔒"),
    el("span", { class: "name" }, label),
    unread > 0 && el("span", { class: "badge", "aria-hidden": "true" }, unread > 99 ? "99+" : unread),
  ], () => openConversation(c.id), {
    class: `conv${unread ? " unread" : ""}`, "aria-current": c.id === state.openId ? "page" : null,
    "aria-label": unread ? `${label}, ${unread} unread` : label,
  }));
}

// ---- Rendering: messages (one node per message and list, replaced when it changes) ---------
function renderMessageList() {
  const entry = conv(state.openId);
  const list = $("message-list");
  const top = [...entry.messages.values()].filter((m) => !m.thread_root_id).sort((a, b) => a.seq - b.seq);
  const pending = [...state.pending.values()]
    .filter((p) => p.frame.conversation_id === state.openId && !p.frame.thread_root_id).map(pendingMessage);
  list.replaceChildren(...[...top, ...pending].map((m) => messageNode(m, list)));
  for (const node of list.children) regroup(node);
  $("load-older").hidden = !entry.hasMore;
  $("messages").scrollTop = $("messages").scrollHeight;
}

/** Where a message shows: the main list (top-level) and/or the open thread (root + replies). */
function listsFor(m) {
  if (m.conversation_id !== state.openId) return [];
  const thread = $("thread-list");
  const inThread = thread && (m.thread_root_id === state.threadRootId || m.id === state.threadRootId);
  return [!m.thread_root_id && $("message-list"), inThread && thread].filter(Boolean);
}

function renderMessage(message) {
  for (const list of listsFor(message)) {
    const box = list.closest(".messages, .side-body");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const node = messageNode(message, list);
    const old = list.querySelector(`[data-id="${CSS.escape(message.id)}"]`);
    if (old) old.replaceWith(node);
    else {
      // Insert by seq; pending ones (seq = MAX_SAFE_INTEGER) stay last.
      const after = [...list.children].find((n) => Number(n.dataset.seq) > message.seq);
      list.insertBefore(node, after || null);
    }
    regroup(node);
    if (node.nextElementSibling) regroup(node.nextElementSibling);
    if (atBottom || message.pending) box.scrollTop = box.scrollHeight; // follow the conversation
  }
}

function removeMessageNodes(id) {
  for (const node of document.querySelectorAll(`[data-id="${CSS.escape(id)}"]`)) {
    const next = node.nextElementSibling;
    node.remove();
    if (next) regroup(next);
  }
}

/** Consecutive messages by one author within 5 minutes share one header, as in Slack. */
function regroup(node) {
  const prev = node.previousElementSibling;
  const close = prev && prev.dataset.user === node.dataset.user &&
    Date.parse(node.dataset.time) - Date.parse(prev.dataset.time) < 5 * 60 * 1000;
  node.classList.toggle("grouped", Boolean(close));
}

function messageNode(m, list) {
  const inThread = list.id === "thread-list";
  const author = userName(m.user_id);
  const flags = ["pending", "failed", "deleted"].filter((f) => m[f]).join(" ");
  const avatar = el("span", { class: "avatar", "aria-hidden": "true" }, author.slice(0, 1).toUpperCase());
  avatar.style.background = avatarColor(m.user_id);
  const node = el("li", {
    class: `msg ${flags}`, "data-id": m.id, "data-seq": m.seq, "data-user": m.user_id, "data-time": m.created_at,
  },
  avatar,
  el("div", { class: "msg-head" }, el("span", { class: "author" }, author),
    el("time", { datetime: m.created_at, title: fullDate(m.created_at) },
      timeFormat.format(new Date(m.created_at)))),
  el("div", { class: "text" }, m.deleted ? "This message was deleted." : m.text),
  m.edited_at && !m.deleted && el("span", { class: "edited", title: fullDate(m.edited_at) }, "(edited)"));
  if (m.pending) {
    node.append(el("div", { class: "status" }, m.failed ? `Not sent: ${m.failed} ` : "Sending…",
      m.failed && button("Retry", () => retrySend(m.clientMsgId), { class: "link" }),
      m.failed && button("Discard", () => discardSend(m.clientMsgId), { class: "link" })));
    return node;
  }
  if (m.deleted) return node;
  if (m.reactions.length) {
    node.append(el("div", { class: "reactions" }, m.reactions.map((r) => {
      const reacted = r.user_ids.includes(state.me.id);
      return button(`${r.emoji} ${r.count}`, () => toggleReaction(m, r.emoji), {
        class: "reaction", "aria-pressed": String(reacted), title: r.user_ids.map(userName).join(", "),
        "aria-label": `${r.emoji} ${r.count}, ${reacted ? "remove your reaction" : "react"}`,
      });
    })));
  }
  if (!inThread && m.reply_count > 0) {
    const label = m.reply_count === 1 ? "1 reply" : `${m.reply_count} replies`;
    node.append(button(label, () => openThread(m.id), { class: "link replies" }));
  }
  node.append(messageActions(m, inThread));
  return node;
}

function messageActions(m, inThread) {
  const mine = m.user_id === state.me.id;
  const picker = el("div", { class: "picker", hidden: true }, QUICK_EMOJI.map((e) =>
    icon(e, `React with ${e}`, () => { picker.hidden = true; toggleReaction(m, e); })));
  return el("div", { class: "actions", role: "toolbar", "aria-label": "Message actions" },
    icon("☺", "Add reaction", () => { picker.hidden = !picker.hidden; }), picker,
    !inThread && !m.thread_root_id && icon("💬", "Reply in thread", () => openThread(m.id)),
    mine && icon("✎", "Edit message", () => editMessage(m)),
    mine && icon("🗑", "Delete message", () => deleteMessage(m)));
}

function avatarColor(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${hash} 45% 45%)`;
}

// ---- Message actions over REST: the reply is applied at once; its event is then a no-op ----
async function toggleReaction(m, emoji) {
  const current = conv(m.conversation_id)?.messages.get(m.id) || m;
  const mine = current.reactions.some((r) => r.emoji === emoji && r.user_ids.includes(state.me.id));
  try {
    if (mine) await api.delete(`/messages/${m.id}/reactions/${encodeURIComponent(emoji)}`);
    else await api.post(`/messages/${m.id}/reactions`, { emoji });
  } catch (e) {
    if (e.code !== "already_reacted" && e.code !== "no_reaction") throw e; // those: already done
  }
  applyReaction(m.conversation_id, { message_id: m.id, user_id: state.me.id, emoji }, !mine);
}

function editMessage(m) {
  const text = el("textarea", { rows: 4, maxlength: state.maxChars, "aria-label": "Message text" });
  text.value = m.text;
  openDialog("Edit message", [text],
    async () => storeMessage(await api.patch(`/messages/${m.id}`, { text: text.value })));
}

function deleteMessage(m) {
  openDialog("Delete message?", [el("p", {}, "This can't be undone.")],
    async () => storeMessage(await api.delete(`/messages/${m.id}`)), "Delete");
}

// ---- Side panel (thread or search results) and dialogs -------------------------------------
function showSide(title) {
  $("side-title").textContent = title;
  $("side").hidden = false;
  $("app-view").classList.add("with-side");
}

function closeSide() {
  state.threadRootId = null;
  $("side").hidden = true;
  $("thread-composer").hidden = true;
  $("side-body").replaceChildren();
  $("app-view").classList.remove("with-side");
}

async function search(query) {
  if (!query.trim() || !state.workspaceId) return;
  const params = new URLSearchParams({ q: query, workspace_id: state.workspaceId, limit: "50" });
  const result = await api.get(`/search?${params}`);
  closeSide();
  showSide(`Search: ${query}`);
  const items = result.matches.map(({ message: m, highlight }) => {
    const where = conv(m.conversation_id) ? convLabel(conv(m.conversation_id)) : "conversation";
    return el("li", {}, button([
      el("span", { class: "result-meta" }, `${where} · ${userName(m.user_id)} · ${fullDate(m.created_at)}`),
      el("span", { class: "result-text" }, highlightFragment(highlight)),
    ], () => openSearchResult(m), { class: "result-open" }));
  });
  $("side-body").replaceChildren(
    el("p", { class: "muted" }, result.total === 1 ? "1 result" : `${result.total} results`),
    el("ol", { id: "search-results", class: "results" }, items));
}

async function openSearchResult(m) {
  if (!conv(m.conversation_id)) return toast("You are not a member of that conversation.");
  await openConversation(m.conversation_id);
  if (m.thread_root_id) return openThread(m.thread_root_id);
  const node = $("message-list").querySelector(`[data-id="${CSS.escape(m.id)}"]`);
  node?.scrollIntoView({ block: "center" });
  node?.classList.add("flash");
  return undefined;
}

/** A small modal form. `onOk` may throw: its message shows in the dialog, which stays open. */
function openDialog(title, bodyNodes, onOk, okLabel = "OK") {
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...bodyNodes);
  $("dialog-error").textContent = "";
  $("dialog-ok").textContent = okLabel;
  $("dialog-ok").hidden = !onOk;
  $("dialog-cancel").textContent = onOk ? "Cancel" : "Close";
  $("dialog").onOk = onOk;
  $("dialog").showModal();
  $("dialog").querySelector("input, textarea")?.focus();
}

$("dialog-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await $("dialog").onOk?.();
    $("dialog").close();
  } catch (err) {
    $("dialog-error").textContent = err.message;
  }
});
$("dialog-cancel").addEventListener("click", () => $("dialog").close());

const field = (label, input) => el("label", { class: "field" }, el("span", {}, label), input);

// ---- Wiring: forms and buttons -------------------------------------------------------------
$("auth-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const action = e.submitter?.value || "login";
  const body = { username: $("auth-username").value.trim(), password: $("auth-password").value };
  const displayName = $("auth-display").value.trim();
  if (action === "signup" && displayName) body.display_name = displayName;
  $("auth-error").textContent = "";
  try {
    const { token } = await api.post(`/auth/${action}`, body);
    api.token = token;
    localStorage.setItem("parley.token", token);
    $("auth-password").value = "";
    await start();
  } catch (err) {
    $("auth-error").textContent = err.message;
  }
});

$("logout").addEventListener("click", async () => {
  await api.post("/auth/logout").catch(() => null);
  signOut();
});

$("workspace-select").addEventListener("change", (e) => selectWorkspace(e.target.value));

$("new-workspace").addEventListener("click", () => {
  const name = el("input", { required: true, maxlength: 128 });
  openDialog("Create a workspace", [field("Name", name)], async () => {
    await loadWorkspaces((await api.post("/workspaces", { name: name.value.trim() })).id);
    realtime.ws?.close(4000, "new workspace"); // the socket learns our workspaces at hello
  }, "Create");
});

$("join-workspace").addEventListener("click", () => {
  const code = el("input", { required: true, maxlength: 64, autocomplete: "off" });
  openDialog("Join a workspace", [field("Invite code", code)], async () => {
    await loadWorkspaces((await api.post("/workspaces/join", { code: code.value.trim() })).id);
    realtime.ws?.close(4000, "joined a workspace"); // the socket learns our workspaces at hello
  }, "Join");
});

$("invite").addEventListener("click", async () => {
  if (!state.workspaceId) return;
  const invite = await api.post(`/workspaces/${state.workspaceId}/invites`);
  const code = el("input", { readonly: true, value: invite.code, "aria-label": "Invite code" });
  openDialog("Invite people", [el("p", {}, `Share this code; it expires ${fullDate(invite.expires_at)}.`), code]);
  code.select();
});

$("create-channel").addEventListener("click", () => {
  const name = el("input", { required: true, maxlength: 80, placeholder: "e.g. plan-budget" });
  const topic = el("input", { maxlength: 250 });
  const secret = el("input", { type: "checkbox" });
  openDialog("Create a channel", [field("Name", name), field("Topic", topic),
    el("label", { class: "check" }, secret, " Private")], async () => {
    const body = { name: name.value.trim(), topic: topic.value, private: secret.checked };
    const c = await api.post(`/workspaces/${state.workspaceId}/channels`, body);
    addConversation(c);
    await openConversation(c.id);
  }, "Create");
});

$("browse-channels").addEventListener("click", async () => {
  const views = await api.get(`/workspaces/${state.workspaceId}/conversations`);
  const joinable = views.filter((v) => !v.is_member && v.conversation.kind === "public");
  const join = async (id) => {
    const c = await api.post(`/conversations/${id}/join`);
    addConversation(c);
    $("dialog").close();
    await openConversation(c.id);
  };
  const items = joinable.map(({ conversation: c }) => el("li", {},
    el("span", {}, `#${c.name} `, el("span", { class: "muted" }, c.topic)), button("Join", () => join(c.id))));
  if (!items.length) items.push(el("li", { class: "muted" }, "No other public channels."));
  openDialog("Browse channels", [el("ul", { class: "pick-list" }, items)]);
});

$("open-dm").addEventListener("click", () => {
  const others = [...state.users.values()].filter((u) => u.id !== state.me.id);
  const username = el("input", { required: true, autocomplete: "off" });
  const list = el("ul", { class: "pick-list" }, others.map((u) => el("li", {},
    el("span", { class: `dot ${state.presence.get(u.id) || "offline"}`, "aria-hidden": "true" }),
    button(`${u.display_name} (@${u.username})`, () => { username.value = u.username; }, { class: "link" }))));
  openDialog("Direct message", [field("Username", username), list], async () => {
    const user = others.find((u) => u.username === username.value.trim().replace(/^@/, ""));
    if (!user) throw new Error("No member of this workspace has that username.");
    const c = await api.post(`/workspaces/${state.workspaceId}/dms`, { user_ids: [user.id] });
    addConversation(c, { dmMembers: [state.me.id, user.id] });
    await openConversation(c.id);
  }, "Open");
});

$("load-older").addEventListener("click", loadOlder);
$("side-close").addEventListener("click", closeSide);
$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  search($("search-input").value);
});

/** Enter sends, Shift+Enter is a newline; typing frames go out at most every 3 s. */
function wireComposer(form, input, threadRoot) {
  const submit = () => {
    const text = input.value.trim();
    if (!text || !state.openId) return;
    sendMessage(state.openId, text, threadRoot());
    input.value = "";
    input.style.height = "";
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  input.addEventListener("input", () => {
    input.style.height = "";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`; // grow with the text
    if (input.value) sendTyping(threadRoot());
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
}
wireComposer($("composer"), $("composer-input"), () => null);
wireComposer($("thread-composer"), $("thread-input"), () => state.threadRootId);

start();
