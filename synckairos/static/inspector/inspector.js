// /inspector: follow one session live, built on the JavaScript client
// (static/client/ is a copy of clients/js/src, refreshed by scripts/vendor-assets.sh).
//
// Nothing here counts down. Every frame, each value shown is computed by the
// client's display helpers from the last state the server sent and the
// client's synced clock (`remainingMs(state, clock.now(), pid)`); a state that
// arrives replaces the one the frame computes from. So what is shown is right
// after a tab slept, across a dropped socket, and across a server restart: the
// client resumes with RECONNECT and replays each missed version in order.
//
// The log shows every applied version, marks those replayed after a
// reconnect, full resyncs (with the versions they covered), epoch changes and
// any gap (which the client should never let through: the inspector checks
// versions independently), and lists each participant's displayed time jump
// at every change: the first thing to look at when a player says "my clock
// jumped".

import { SyncKairosClient, SyncKairosError, remainingMs } from '../client/index.js';

/** Root of the server's API: the page is served at `<root>/inspector`. */
const API_BASE = new URL('.', document.baseURI).href;
const RECENT_KEY = 'synckairos.inspector.recent';
const TOKEN_KEY = 'synckairos.inspector.token';
const LOG_LIMIT = 500;
/** Display discontinuities at least this large (ms) are listed in the log. */
const JUMP_MS = 20;
/** A JWT: three base64url segments (a session token rather than an API key). */
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;
/** Lifetime of a controller token minted with an API key, seconds. */
const MINTED_TTL_S = 12 * 3600;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TIMEOUT_EVENTS = new Set(['participant_timeout', 'session_expired', 'session_completed']);

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Everything the page knows; reset when another session is followed. */
const view = {
  /** @type {SyncKairosClient | null} */ client: null,
  token: '',
  /** @type {import('../client/live.js').LiveSession | null} */ live: null,
  /** @type {(() => void) | null} */ stopTick: null,
  /** @type {string | null} */ sessionId: null,
  /** @type {any} */ state: null,
  version: 0,
  epoch: '',
  everOpened: false,
  resuming: false,
  reconnects: 0,
  versions: 0,
  gaps: 0,
  resyncs: 0,
  syncs: 0,
  /** @type {{estimate: any, at: number} | null} */ lastSync: null,
  rowsKey: '',
  /** @type {Map<string, {row: HTMLElement, remaining: HTMLElement, used: HTMLElement, turns: HTMLElement, tags: HTMLElement, button: HTMLButtonElement}>} */
  rows: new Map(),
};

// ------------------------------------------------------------ formatting

/** @param {number | null | undefined} ms */
function duration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '–';
  const sign = ms < 0 ? '−' : '';
  let rest = Math.round(Math.abs(ms));
  const milli = rest % 1000;
  rest = Math.floor(rest / 1000);
  const s = rest % 60;
  const m = Math.floor(rest / 60) % 60;
  const h = Math.floor(rest / 3600);
  const tail = `${String(s).padStart(2, '0')}.${String(milli).padStart(3, '0')}`;
  return h > 0 ? `${sign}${h}:${String(m).padStart(2, '0')}:${tail}` : `${sign}${m}:${tail}`;
}

/** @param {number} epochMs */
const clockTime = (epochMs) => new Date(epochMs).toISOString().slice(11, 23);
/** @param {number} ms @param {number} [digits] */
const millis = (ms, digits = 1) => `${ms.toFixed(digits)} ms`;
/** @param {string | null | undefined} id */
const short = (id) => (id ? id.slice(0, 8) : '–');

/** A random UUID, also where `crypto.randomUUID` is missing (plain http on a LAN address). */
function uuid() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Display name of a participant: from the demo's metadata, else its position. */
function nameOf(/** @type {any} */ state, /** @type {string | null | undefined} */ pid) {
  if (!pid) return '–';
  const named = state?.metadata?.names?.[pid];
  if (typeof named === 'string') return named;
  const p = state?.participants?.find((/** @type {any} */ q) => q.participant_id === pid);
  return p ? `P${p.participant_index + 1}` : short(pid);
}

function serverNow() {
  const clock = view.client?.clock;
  return clock && clock.synced ? clock.now() : Date.now();
}

// ------------------------------------------------------------ notices and log

/** @param {string} text @param {'info' | 'warn' | 'error'} [level] */
function notice(text, level = 'info') {
  const el = $('notice');
  el.textContent = text;
  el.dataset.level = level;
}

/**
 * @param {{kind: string, what: string, version?: number, details?: string,
 *          marks?: string[], age?: number | null}} entry
 */
function log(entry) {
  const tr = document.createElement('tr');
  const marks = entry.marks ?? [];
  tr.dataset.kind = entry.kind;
  tr.dataset.what = entry.what;
  tr.dataset.mark = marks.join(' ');
  tr.dataset.wall = String(Date.now());
  if (entry.version != null) tr.dataset.version = String(entry.version);
  const cells = [
    clockTime(serverNow()),
    entry.version != null ? String(entry.version) : '',
    '',
    entry.details ?? '',
    entry.age != null ? `${Math.round(entry.age)} ms` : '',
  ];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  const what = /** @type {HTMLElement} */ (tr.children[2]);
  what.append(entry.what);
  for (const mark of marks) {
    const tag = document.createElement('span');
    tag.className = `tag ${mark}`;
    tag.textContent = mark;
    what.append(' ', tag);
  }
  const body = /** @type {HTMLElement} */ ($('log').querySelector('tbody'));
  body.prepend(tr);
  while (body.children.length > LOG_LIMIT) body.lastElementChild?.remove();
}

/** @param {string} what @param {unknown} error */
function reportError(what, error) {
  if (error instanceof SyncKairosError) {
    if (error.rateLimited) {
      const wait = error.retryAfterMs != null ? ` retry in ${Math.ceil(error.retryAfterMs / 1000)} s` : '';
      notice(`${what}: rate limited${error.status === 429 ? ' (429)' : ''};${wait}`, 'warn');
    } else {
      notice(`${what}: ${error.code}: ${error.message}`, 'error');
    }
    const details = error.details ? ` ${JSON.stringify(error.details)}` : '';
    log({ kind: 'error', what: `${what}: ${error.code}`, details: `${error.message}${details}`, marks: ['error'] });
    return;
  }
  notice(`${what}: ${error}`, 'error');
  log({ kind: 'error', what, details: String(error), marks: ['error'] });
}

// ------------------------------------------------------------ the client

/** @param {string} token */
function clientFor(token) {
  if (view.client && view.token === token) return view.client;
  view.client?.close();
  const client = new SyncKairosClient({
    baseUrl: API_BASE,
    token: token || undefined,
    reconnect: { maxDelayMs: 5_000 },
  });
  view.client = client;
  view.token = token;
  view.syncs = 0;
  view.lastSync = null;
  client.clock.on('sync', ({ estimate, deltaMs, stepped }) => {
    if (view.client !== client) return;
    view.syncs += 1;
    view.lastSync = { estimate, at: performance.now() };
    const correction = view.syncs > 1 ? `; correction ${millis(deltaMs)} ${stepped ? 'stepped' : 'slewed'}` : '';
    log({
      kind: 'clock',
      what: 'clock sync',
      details:
        `offset ${millis(estimate.offsetMs)} ± ${millis(estimate.uncertaintyMs)}, RTT ${millis(estimate.rttMs)}, ` +
        `${estimate.used}/${estimate.samples} exchanges via ${estimate.source}${correction}`,
    });
  });
  client.clock.on('error', (error) => {
    if (view.client === client) reportError('clock sync', error);
  });
  client.clock.on('skew', ({ skewMs }) => {
    if (view.client === client) notice(`this device's clock is ${Math.round(skewMs / 1000)} s off the server's`, 'warn');
  });
  return client;
}

function stopFollowing() {
  view.stopTick?.();
  view.live?.close();
  Object.assign(view, {
    live: null, stopTick: null, sessionId: null, state: null, version: 0, epoch: '',
    everOpened: false, resuming: false, reconnects: 0, versions: 0, gaps: 0, resyncs: 0, rowsKey: '',
  });
  view.rows.clear();
  for (const id of ['s-last-drop', 'f-remaining', 'f-elapsed', 'f-deadline', 'session-id-label']) $(id).textContent = '–';
  delete $('f-remaining').dataset.ms;
  /** @type {HTMLElement} */ ($('participants').querySelector('tbody')).replaceChildren();
  /** @type {HTMLElement} */ ($('log').querySelector('tbody')).replaceChildren();
}

/**
 * The credential to follow `sessionId` with. A session token (a JWT) is used
 * as is. Anything else is taken for an API key: `/ws` accepts only session
 * tokens, so a controller token for this session is minted with it (and used
 * for the controls too); when the server mints none (no token secret: the
 * socket needs no token), the key is used as given.
 *
 * @param {string} sessionId
 * @param {string} token
 * @returns {Promise<{credential: string, minted: boolean}>}
 */
async function credentialFor(sessionId, token) {
  if (!token || JWT.test(token)) return { credential: token, minted: false };
  try {
    const response = await fetch(new URL(`v1/sessions/${sessionId}/tokens`, API_BASE), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'controller', ttl_s: MINTED_TTL_S }),
    });
    if (response.ok) return { credential: (await response.json()).data.token, minted: true };
  } catch {
    // the socket will say what is wrong
  }
  return { credential: token, minted: false };
}

let follows = 0;

/** @param {string} sessionId @param {string} token */
async function follow(sessionId, token) {
  const turn = ++follows;
  stopFollowing();
  /** @type {HTMLInputElement} */ ($('session-input')).value = sessionId;
  const { credential, minted } = await credentialFor(sessionId, token);
  if (turn !== follows) return; // another follow started meanwhile
  const client = clientFor(credential);
  const live = client.subscribe(sessionId);
  view.live = live;
  view.sessionId = sessionId;
  $('session-id-label').textContent = sessionId;
  if (location.hash !== `#session=${sessionId}`) history.replaceState(null, '', `#session=${sessionId}`);
  remember(sessionId);
  renderSocket('connecting', { attempt: 0 });
  renderStructure();
  log({ kind: 'connection', what: 'follow', details: `${sessionId} over ${client.wsUrl}` });
  if (minted) {
    log({
      kind: 'connection',
      what: 'token minted',
      details: `a controller token for this session (${MINTED_TTL_S / 3600} h), minted with the API key`,
    });
  }

  live.on('state', (e) => live === view.live && onState(e));
  live.on('connection', (e) => live === view.live && onConnection(e));
  live.on('resumed', (e) => live === view.live && onResumed(e));
  live.on('error', (error) => live === view.live && reportError('socket', error));
  live.on('timeout', ({ participantId, event }) => {
    if (live !== view.live) return;
    notice(`timer reached zero: ${nameOf(view.state, participantId)} (${event.type})`, 'warn');
  });
  live.on('deleted', () => {
    if (live !== view.live) return;
    log({ kind: 'update', what: 'session deleted' });
    notice('the session was deleted', 'warn');
  });
  view.stopTick = live.tick((snapshot) => live === view.live && renderFrame(snapshot));
  client.getSession(sessionId).catch((/** @type {unknown} */ error) => {
    if (live !== view.live) return;
    if (error instanceof SyncKairosError && error.code === 'SESSION_NOT_FOUND') {
      notice('no such session (yet): it will show up here as soon as it is created', 'warn');
    } else {
      reportError('GET session', error);
    }
  });
}

// ------------------------------------------------------------ live events

/** @param {any} event */
function isTimeout(event) {
  if (!event || !TIMEOUT_EVENTS.has(event.type)) return false;
  return event.type === 'participant_timeout' || event.reason === 'timeout';
}

/** Each participant's displayed remaining time just before and just after a change. */
function jumps(/** @type {any} */ before, /** @type {any} */ after) {
  if (!before || before.session_id !== after.session_id) return [];
  const now = serverNow();
  const out = [];
  for (const p of after.participants) {
    if (!before.participants.some((/** @type {any} */ q) => q.participant_id === p.participant_id)) continue;
    const was = remainingMs(before, now, p.participant_id);
    const is = remainingMs(after, now, p.participant_id);
    if (was == null || is == null || Math.abs(is - was) < JUMP_MS) continue;
    out.push(`${nameOf(after, p.participant_id)} ${is > was ? '+' : '−'}${Math.round(Math.abs(is - was))} ms`);
  }
  return out;
}

/** @param {any} event */
function describeEvent(event, /** @type {any} */ state) {
  if (!event) return '';
  const parts = [];
  for (const [key, value] of Object.entries(event)) {
    if (key === 'type' || value == null) continue;
    const shown = typeof value === 'string' && UUID.test(value) ? nameOf(state, value) : JSON.stringify(value);
    parts.push(`${key}=${shown}`);
  }
  return parts.join(' ');
}

/** @param {import('../client/index.js').StateEvent} e */
function onState({ state, version, epoch, kind, event }) {
  const first = view.state === null;
  const marks = [];
  const notes = [];
  if (kind === 'update') {
    if (!first && epoch === view.epoch && version !== view.version + 1) {
      view.gaps += 1;
      marks.push('gap');
      notes.push(`expected v${view.version + 1}`);
    }
    if (view.resuming) marks.push('replayed');
  } else if (!first) {
    view.resyncs += 1;
    marks.push('resync');
    if (epoch !== view.epoch) {
      marks.push('epoch');
      notes.push(`new history epoch ${short(epoch)} (was ${short(view.epoch)}): the session was deleted and created again`);
    } else if (state.recovered && !view.state?.recovered) {
      notes.push(`restored from the audit trail: the version jumped to v${version}, past every version Redis may have lost`);
    } else if (version > view.version + 1) {
      notes.push(`full state: v${view.version + 1}–v${version - 1} not replayable`);
    }
  }
  if (isTimeout(event)) marks.push('timeout');
  const jumped = jumps(view.state, state);
  if (jumped.length) notes.push(`display ${jumped.join(', ')}`);
  const detail = describeEvent(event, state);
  if (detail) notes.unshift(detail);
  notes.push(`→ ${state.status}${state.active_participant_id ? `, ${nameOf(state, state.active_participant_id)} active` : ''}`);
  view.versions += 1;
  log({
    kind,
    what: kind === 'update' ? event?.type ?? 'update' : first ? 'initial state' : 'full state',
    version,
    details: notes.join('; '),
    marks,
    age: state.server_time_ms != null ? serverNow() - state.server_time_ms : null,
  });
  view.state = state;
  view.version = version;
  view.epoch = epoch;
  renderStructure();
}

/** @param {import('../client/index.js').ConnectionEvent} e */
function onConnection(e) {
  renderSocket(e.status, e);
  const drop = e.code != null ? `code ${e.code}${e.reason ? ` (${e.reason})` : ''}` : '';
  if (e.status === 'open') {
    const again = view.everOpened;
    view.everOpened = true;
    if (again) {
      view.reconnects += 1;
      view.resuming = view.state !== null;
    }
    log({
      kind: 'connection',
      what: again ? 'socket reopened' : 'socket open',
      details: again ? `reconnect #${view.reconnects} after ${e.attempt} attempt(s)${view.resuming ? '; RECONNECT sent' : ''}` : '',
      marks: again ? ['reconnect'] : [],
    });
  } else if (e.status === 'reconnecting' || (e.status === 'connecting' && e.attempt > 0)) {
    $('s-last-drop').textContent = `${drop || 'lost'} at ${clockTime(serverNow())}`;
    log({
      kind: 'connection',
      what: e.status === 'reconnecting' ? 'socket lost' : 'cannot connect',
      details: `${drop}; attempt ${e.attempt} in ${Math.round(e.delayMs ?? 0)} ms`,
    });
  } else if (e.status === 'closed') {
    log({ kind: 'connection', what: 'live session closed', details: e.reason ?? '' });
  }
}

/** @param {import('../client/index.js').ResumedEvent} e */
function onResumed({ recovered, replayed, version }) {
  view.resuming = false;
  log({
    kind: 'connection',
    what: 'resumed',
    version,
    details: recovered
      ? `gap-free: ${replayed} missed version(s) replayed in order`
      : 'history could not fill the gap: full state',
    marks: recovered ? ['reconnect'] : ['resync'],
  });
}

// ------------------------------------------------------------ rendering

/** @param {string} status @param {{attempt: number, delayMs?: number}} e */
function renderSocket(status, e) {
  const badge = $('socket-badge');
  badge.dataset.status = status;
  badge.textContent = status === 'reconnecting' ? `reconnecting (attempt ${e.attempt})` : `socket ${status}`;
  $('s-status').textContent = status;
  $('s-status').dataset.status = status;
}

/** Rebuild what changes only with a new state: rows, facts, buttons. */
function renderStructure() {
  const state = view.state;
  $('s-reconnects').textContent = String(view.reconnects);
  $('s-versions').textContent = String(view.versions);
  $('s-gaps').textContent = String(view.gaps);
  $('s-resyncs').textContent = String(view.resyncs);
  const status = state?.status ?? null;
  const enabled = {
    start: status === 'pending',
    switch: status === 'running',
    pause: status === 'running',
    resume: status === 'paused',
    complete: status === 'running' || status === 'paused',
    cancel: status === 'pending' || status === 'running' || status === 'paused',
  };
  for (const button of document.querySelectorAll('#controls-panel button[data-command]')) {
    const name = /** @type {keyof typeof enabled} */ (/** @type {HTMLElement} */ (button).dataset.command);
    /** @type {HTMLButtonElement} */ (button).disabled = !enabled[name];
  }
  for (const [id, value] of [
    ['f-status', status ?? '–'],
    ['f-mode', state?.sync_mode ?? '–'],
    ['f-version', state ? String(view.version) : '–'],
    ['f-epoch', view.epoch ? short(view.epoch) : '–'],
  ]) {
    $(id).textContent = value;
  }
  $('f-epoch').title = view.epoch;
  if (!state) return;
  const key = state.participants.map((/** @type {any} */ p) => p.participant_id).join(',');
  if (key !== view.rowsKey) buildRows(state, key);
  for (const p of state.participants) {
    const row = view.rows.get(p.participant_id);
    if (!row) continue;
    const active = p.participant_id === state.active_participant_id;
    row.row.classList.toggle('active', active);
    row.row.classList.toggle('expired', p.has_expired);
    row.turns.textContent = String(p.cycle_count);
    row.tags.replaceChildren();
    for (const [on, tag] of [[active, 'active'], [p.has_expired, 'expired']]) {
      if (!on) continue;
      const span = document.createElement('span');
      span.className = `tag ${tag}`;
      span.textContent = String(tag);
      row.tags.append(span);
    }
    row.button.disabled = status !== 'running' || active;
  }
}

/** @param {any} state @param {string} key */
function buildRows(state, key) {
  const body = /** @type {HTMLElement} */ ($('participants').querySelector('tbody'));
  body.replaceChildren();
  view.rows.clear();
  const ordered = [...state.participants].sort((a, b) => a.participant_index - b.participant_index);
  for (const p of ordered) {
    const tr = document.createElement('tr');
    tr.dataset.participant = p.participant_id;
    const cell = (/** @type {string} */ text, /** @type {string} */ cls = '') => {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
      return td;
    };
    cell(String(p.participant_index));
    const name = cell(`${nameOf(state, p.participant_id)} `);
    const id = document.createElement('span');
    id.className = 'muted';
    id.textContent = short(p.participant_id);
    id.title = p.participant_id;
    name.append(id);
    cell(p.group_id ? short(p.group_id) : '–').title = p.group_id ?? '';
    const remaining = cell('–', 'remaining');
    const used = cell('–', 'time');
    const turns = cell('0');
    const tags = cell('');
    const actions = cell('');
    const button = document.createElement('button');
    button.className = 'small';
    button.textContent = 'make active';
    button.title = 'switch to this participant (next_participant_id)';
    button.onclick = () =>
      command('switch', { nextParticipantId: p.participant_id });
    actions.append(button);
    body.append(tr);
    view.rows.set(p.participant_id, { row: tr, remaining, used, turns, tags, button });
  }
  view.rowsKey = key;
}

/** One frame: every time value, from the last state and the synced clock. */
function renderFrame(/** @type {import('../client/index.js').DisplaySnapshot | null} */ snapshot) {
  const at = performance.now();
  const clock = view.client?.clock;
  if (clock) {
    const sync = view.lastSync;
    $('c-offset').textContent = sync ? millis(clock.offsetMs) : '–';
    $('c-rtt').textContent = sync ? millis(sync.estimate.rttMs) : '–';
    $('c-uncertainty').textContent = sync ? `± ${millis(clock.uncertaintyMs, 2)}` : '–';
    $('c-source').textContent = sync ? sync.estimate.source : '–';
    $('c-syncs').textContent = String(view.syncs);
    $('c-last').textContent = sync ? `${((at - sync.at) / 1000).toFixed(0)} s ago` : '–';
    $('f-server-now').textContent = clock.synced ? clockTime(clock.now()) : 'not synced yet';
  }
  if (!snapshot || !view.state) return;
  const main = $('f-remaining');
  main.textContent = duration(snapshot.remainingMs);
  main.dataset.ms = snapshot.remainingMs == null ? '' : String(snapshot.remainingMs);
  $('f-elapsed').textContent = duration(snapshot.elapsedMs);
  const deadline = view.state.deadline_ms;
  $('f-deadline').textContent =
    deadline == null ? 'none (nothing runs)' : `${deadline} (${clockTime(deadline)}, in ${duration(deadline - snapshot.serverNowMs)})`;
  for (const p of snapshot.participants) {
    const row = view.rows.get(p.participantId);
    if (!row) continue;
    row.remaining.textContent = duration(p.remainingMs);
    row.remaining.dataset.ms = p.remainingMs == null ? '' : String(p.remainingMs);
    row.remaining.dataset.at = String(at);
    row.used.textContent = duration(p.elapsedMs);
  }
}

// ------------------------------------------------------------ controls

/**
 * @param {string} name
 * @param {{nextParticipantId?: string}} [options]
 */
async function command(name, options = {}) {
  const client = view.client;
  const id = view.sessionId;
  if (!client || !id) return;
  notice(`${name}…`);
  try {
    /** @type {any} */
    let result;
    if (name === 'switch') {
      const current = view.state?.active_participant_id;
      result = await client.switchCycle(id, {
        ...options,
        ...(current ? { currentParticipantId: current } : {}),
      });
    } else {
      const method = /** @type {const} */ ({
        start: 'startSession',
        pause: 'pauseSession',
        resume: 'resumeSession',
        complete: 'completeSession',
        cancel: 'cancelSession',
      })[/** @type {'start'} */ (name)];
      result = await client[method](id);
    }
    notice(`${name}: done (v${result.version})`);
  } catch (error) {
    reportError(name, error);
  }
}

/** A demo session of `mode`: `count` participants of `seconds` each. */
function demoBody(/** @type {string} */ mode, /** @type {number} */ count, /** @type {number} */ seconds, /** @type {number} */ increment) {
  const ms = Math.min(86_400_000, Math.max(1_000, Math.round(seconds * 1000)));
  const groups = [uuid(), uuid()];
  /** @type {Record<string, string>} */
  const names = {};
  const participants = Array.from({ length: count }, (_, i) => {
    const participant_id = uuid();
    names[participant_id] = mode === 'per_group' ? `${'AB'[i % 2]}${Math.floor(i / 2) + 1}` : `P${i + 1}`;
    /** @type {Record<string, unknown>} */
    const p = { participant_id, participant_index: i, total_time_ms: ms };
    if (mode === 'per_group') p.group_id = groups[i % 2];
    return p;
  });
  /** @type {Record<string, unknown>} */
  const body = {
    session_id: uuid(),
    sync_mode: mode,
    participants,
    total_time_ms: ms,
    metadata: { created_by: 'synckairos inspector', names },
  };
  if (increment > 0) body.increment_ms = Math.min(60_000, Math.round(increment * 1000));
  if (mode === 'per_cycle') body.time_per_cycle_ms = ms;
  if (mode === 'count_up') body.max_time_ms = ms;
  return body;
}

function tokenInput() {
  const token = /** @type {HTMLInputElement} */ ($('token-input')).value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

/** @param {string} id */
function remember(id) {
  let recent = [];
  try {
    recent = JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]');
  } catch {
    recent = [];
  }
  recent = [id, ...recent.filter((/** @type {string} */ x) => x !== id)].slice(0, 20);
  localStorage.setItem(RECENT_KEY, JSON.stringify(recent));
  renderRecent(recent);
}

/** @param {string[]} recent */
function renderRecent(recent) {
  $('recent-sessions').replaceChildren(
    ...recent.map((id) => {
      const option = document.createElement('option');
      option.value = id;
      return option;
    }),
  );
}

function start() {
  /** @type {HTMLInputElement} */ ($('token-input')).value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  try {
    renderRecent(JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]'));
  } catch {
    renderRecent([]);
  }
  $('follow-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = /** @type {HTMLInputElement} */ ($('session-input')).value.trim();
    if (!UUID.test(id)) {
      notice('a session id is a UUID', 'error');
      return;
    }
    follow(id.toLowerCase(), tokenInput());
  });
  $('demo-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (/** @type {string} */ id) => Number(/** @type {HTMLInputElement} */ ($(id)).value);
    const mode = /** @type {HTMLSelectElement} */ ($('demo-mode')).value;
    const count = Math.max(1, Math.min(8, Math.round(value('demo-participants')) || 2));
    const body = demoBody(mode, count, value('demo-seconds') || 300, value('demo-increment') || 0);
    const token = tokenInput();
    const client = clientFor(token);
    notice(`creating a ${mode} session…`);
    try {
      const state = await client.createSession(/** @type {any} */ (body));
      follow(state.session_id, token);
      notice(`created ${mode} session ${state.session_id}: press Start`);
    } catch (error) {
      reportError('create', error);
    }
  });
  for (const button of document.querySelectorAll('#controls-panel button[data-command]')) {
    button.addEventListener('click', () => command(/** @type {string} */ (/** @type {HTMLElement} */ (button).dataset.command)));
  }
  window.addEventListener('hashchange', () => {
    const id = /^#session=(.+)$/.exec(location.hash)?.[1];
    if (id && UUID.test(id) && id !== view.sessionId) follow(id, tokenInput());
  });
  renderStructure();
  const initial = /^#session=(.+)$/.exec(location.hash)?.[1];
  if (initial && UUID.test(initial)) follow(initial, tokenInput());
  document.body.dataset.ready = 'true';
}

/** For the console and the browser tests: the page's live objects (read-only use). */
Object.defineProperty(window, 'inspector', {
  value: Object.freeze({
    get client() {
      return view.client;
    },
    get live() {
      return view.live;
    },
    follow,
  }),
});

start();
