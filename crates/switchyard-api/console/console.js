// Switchyard's web console: every page, rendered in the browser from the hub's own API.
//
// Rules this file keeps: tenant data (payloads, response bodies, logs, names) only ever enters
// the page as text (`h()` sets textContent and attributes, never markup); the API key lives in this tab's
// sessionStorage and goes out only as an Authorization header to this hub.
'use strict';

// ---- state and API ------------------------------------------------------------------------

const session = {
  get key() { return sessionStorage.getItem('sy.key'); },
  get org() { return sessionStorage.getItem('sy.org'); },
  get role() { return sessionStorage.getItem('sy.role') || 'viewer'; },
  get orgName() { return sessionStorage.getItem('sy.orgName') || ''; },
  save(key, who) {
    sessionStorage.setItem('sy.key', key);
    sessionStorage.setItem('sy.org', who.org);
    sessionStorage.setItem('sy.role', who.role);
    sessionStorage.setItem('sy.orgName', who.org_name || who.org);
  },
  clear() { sessionStorage.clear(); },
};

const ROLES = ['viewer', 'publisher', 'admin'];
const can = (role) => ROLES.indexOf(session.role) >= ROLES.indexOf(role);

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? `${e.message} (${status} ${e.code})` : `the hub answered ${status}`);
    this.status = status;
  }
}

/** Calls the API with the session's key; answers the JSON (or null), throws ApiError. */
async function api(method, path, body, key) {
  const headers = { Authorization: `Bearer ${key || session.key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (res.status === 401 && !key) { signOut('Your key is no longer accepted; sign in again.'); }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

const enc = encodeURIComponent;
const orgPath = (rest) => `/v1/orgs/${enc(session.org)}${rest}`;
const get = (rest) => api('GET', orgPath(rest));
// Every list answers {data, next_cursor}; configuration lists come whole.
const list = async (rest) => (await get(rest)).data;

// ---- DOM helpers --------------------------------------------------------------------------

/** Builds an element: props are attributes, `on…` listeners, or `text`; kids are nodes or text. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  put(el, ...kids);
  return el;
}

/** Appends kids to a mounted element the way h() does: arrays flattened, absent kids skipped. */
function put(el, ...kids) {
  for (const kid of kids.flat(2)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

const json = (v) => h('pre', { class: 'json' }, JSON.stringify(v, null, 2));
const badge = (s) => h('span', { class: `badge ${s}` }, s);
const link = (hash, text) => h('a', { href: `#/${hash}` }, text);
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
const ms = (n) => (n === null || n === undefined ? '—' : `${Number(n).toFixed(1)} ms`);

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty || 'Nothing yet.');
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows));
}

function flash(message, info) {
  const f = document.getElementById('flash');
  f.textContent = message;
  f.className = info ? 'info' : '';
  f.hidden = !message;
}

/** Runs an action, showing its error (or its success message) in the flash area. */
async function act(fn, done) {
  try {
    flash('');
    await fn();
    if (done) flash(done, true);
  } catch (e) {
    flash(e.message || String(e));
  }
}

/** The values of a form's named fields; empty fields are left out. */
function fields(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else if (el.value !== '') out[el.name] = el.value;
  }
  return out;
}

function parseJson(text, what) {
  try { return JSON.parse(text); } catch (e) { throw new Error(`${what} is not JSON: ${e.message}`); }
}

/** A datetime-local value as RFC 3339 (UTC), or undefined. */
const rfc3339 = (v) => (v ? new Date(v).toISOString() : undefined);

// ---- routing ------------------------------------------------------------------------------

const PAGES = [
  ['events', 'Events'], ['endpoints', 'Endpoints'], ['executors', 'Executors'],
  ['hooks', 'Hooks'], ['schedules', 'Schedules'], ['secrets', 'Secrets'], ['keys', 'Keys'],
];

let leave = null; // what the current page stops when another one opens (a live tail)

function route() {
  if (leave) { leave(); leave = null; }
  flash('');
  const main = document.getElementById('main');
  main.replaceChildren();
  if (!session.key) { document.getElementById('top').hidden = true; return signIn(main); }
  document.getElementById('top').hidden = false;
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === (page || 'events'));
  const render = {
    events: rest[0] ? () => tracePage(main, rest[0]) : () => eventsPage(main),
    endpoints: rest[0] ? () => endpointPage(main, rest[0]) : () => endpointsPage(main),
    executors: rest[0] ? () => executorPage(main, rest[0]) : () => executorsPage(main),
    hooks: () => hooksPage(main),
    schedules: () => schedulesPage(main),
    secrets: () => secretsPage(main),
    keys: () => keysPage(main),
  }[page || 'events'];
  if (!render) { put(main, h('h1', {}, 'No such page')); return; }
  render().catch((e) => flash(e.message || String(e)));
}

function signOut(message) {
  session.clear();
  location.hash = '';
  route();
  if (message) flash(message);
}

function chrome() {
  const nav = document.getElementById('nav');
  nav.replaceChildren(...PAGES.map(([p, label]) => h('a', { href: `#/${p}`, 'data-page': p }, label)));
  document.getElementById('who').textContent = `${session.orgName} (${session.org}) · ${session.role}`;
}

// ---- sign-in ------------------------------------------------------------------------------

function signIn(main) {
  const form = h('form', { class: 'card signin', id: 'signin' },
    h('h1', {}, 'Sign in to Switchyard'),
    h('p', { class: 'muted' }, 'With an API key of your organization. It is kept in this tab only and forgotten when the tab closes.'),
    h('label', {}, 'API key', h('input', { name: 'key', type: 'password', autocomplete: 'off', required: true })),
    h('p', {}, h('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = form.elements.key.value.trim();
    act(async () => {
      let who;
      try { who = await api('GET', '/v1/whoami', undefined, key); } catch (e) {
        throw new Error(e.status === 401 ? 'The hub does not know this key.' : e.message);
      }
      if (!who.org) throw new Error('This is the instance admin key; sign in with a key of an organization.');
      session.save(key, who);
      chrome();
      if (!location.hash) location.hash = '#/events'; else route();
    });
  });
  put(main, form);
}

// ---- live tail (server-sent events over fetch, so the key goes in a header) ----------------

/** Follows the org's event stream; calls onEvent for each. Returns a function that stops it. */
function follow(params, onEvent, onState) {
  const ctl = new AbortController();
  let after = null;
  (async () => {
    while (!ctl.signal.aborted) {
      const q = new URLSearchParams(params);
      if (after) q.set('after', after);
      try {
        const res = await fetch(orgPath(`/events/stream?${q}`), {
          headers: { Authorization: `Bearer ${session.key}`, Accept: 'text/event-stream' },
          signal: ctl.signal,
        });
        if (!res.ok) { onState(`live tail refused: ${res.status}`); return; }
        onState('live');
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          if (buf.length > 8 << 20) throw new Error('a message larger than 8 MiB');
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let id = null, type = null, data = '';
            for (const line of block.split('\n')) {
              const i = line.indexOf(':');
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
              if (field === 'id') id = val; else if (field === 'event') type = val;
              else if (field === 'data') data += (data ? '\n' : '') + val;
            }
            if (type === 'event') { after = id; onEvent(JSON.parse(data)); }
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      onState('reconnecting…');
      await new Promise((r) => setTimeout(r, 1500));
    }
  })();
  return () => ctl.abort();
}

// ---- events -------------------------------------------------------------------------------

function eventRow(e, fresh) {
  const entity = e.entity && (e.entity.type || e.entity.id) ? `${e.entity.type || ''}:${e.entity.id || ''}` : '';
  return h('tr', { class: fresh ? 'new' : undefined, 'data-id': e.id },
    h('td', {}, when(e.received_at)),
    h('td', {}, link(`events/${enc(e.id)}`, e.type)),
    h('td', { class: 'mono' }, entity),
    h('td', { class: 'mono' }, e.id));
}

async function eventsPage(main) {
  const filters = h('form', { class: 'row card', id: 'event-filters' },
    h('label', {}, 'Type or pattern', h('input', { name: 'type', placeholder: 'Ticket*' })),
    h('label', {}, 'Entity type', h('input', { name: 'entity_type', placeholder: 'Ticket' })),
    h('label', {}, 'Entity id', h('input', { name: 'entity_id' })),
    h('label', {}, 'Delivery status', h('select', { name: 'status' },
      h('option', { value: '' }, 'any'), ['pending', 'delivered', 'failed', 'blocked'].map((s) => h('option', { value: s }, s)))),
    h('label', {}, 'Since', h('input', { name: 'since', type: 'datetime-local' })),
    h('label', {}, 'Until', h('input', { name: 'until', type: 'datetime-local' })),
    h('button', { type: 'submit' }, 'Filter'),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'live', checked: true }), 'Live'));
  const state = h('span', { class: 'muted', id: 'tail-state' });
  const body = h('tbody', { id: 'events' });
  const more = h('button', { class: 'secondary', type: 'button', hidden: true }, 'Older events');
  put(main, h('h1', {}, 'Events ', state), filters,
    h('table', {}, h('thead', {}, h('tr', {}, ['Received', 'Type', 'Entity', 'Id'].map((x) => h('th', {}, x)))), body),
    h('p', {}, more));

  let cursor = null;
  let stop = null;
  const query = () => {
    const f = fields(filters);
    const q = {};
    for (const k of ['type', 'entity_type', 'entity_id', 'status']) if (f[k]) q[k] = f[k];
    if (f.since) q.since = rfc3339(f.since);
    if (f.until) q.until = rfc3339(f.until);
    return { q, live: f.live };
  };
  const load = async (reset) => {
    const { q, live } = query();
    if (reset) { body.replaceChildren(); cursor = null; }
    const params = new URLSearchParams({ ...q, limit: '50' });
    if (cursor) params.set('cursor', cursor);
    const page = await get(`/events?${params}`);
    body.append(...page.data.map((e) => eventRow(e)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (reset) {
      if (stop) stop();
      stop = null;
      state.textContent = '';
      // The tail follows what the stream can filter; time and status filters show history only.
      if (live && !q.status && !q.until) {
        const tq = {};
        for (const k of ['type', 'entity_type', 'entity_id']) if (q[k]) tq[k] = q[k];
        stop = follow(tq, (e) => body.prepend(eventRow(e, true)), (s) => { state.textContent = `· ${s}`; });
      }
    }
  };
  leave = () => { if (stop) stop(); };
  filters.addEventListener('submit', (ev) => { ev.preventDefault(); act(() => load(true)); });
  filters.elements.live.addEventListener('change', () => act(() => load(true)));
  more.addEventListener('click', () => act(() => load(false)));
  await load(true);
}

async function tracePage(main, id) {
  const t = await get(`/events/${enc(id)}`);
  const e = t; // the trace is the event with its deliveries and runs
  put(main, h('p', {}, link('events', '← Events')),
    h('h1', {}, `${e.type} `, h('span', { class: 'mono muted' }, e.id)),
    h('div', { class: 'grid' },
      stat('Happened', when(e.timestamp)), stat('Received', when(e.received_at)),
      stat('Entity', e.entity && e.entity.id ? `${e.entity.type || ''}:${e.entity.id}` : '—'),
      stat('Deliveries', t.deliveries.length), stat('Runs', t.runs.length)),
    h('h2', {}, 'Payload'),
    e.payload_dropped_at ? h('p', { class: 'muted' }, `The payload was dropped by retention at ${when(e.payload_dropped_at)}.`) : json(e.data),
    h('h2', {}, 'Deliveries'),
    t.deliveries.length ? t.deliveries.map(deliveryCard) : h('p', { class: 'muted' }, 'No subscription matched this event.'),
    h('h2', {}, 'Executor runs'),
    t.runs.length ? t.runs.map(runCard) : h('p', { class: 'muted' }, 'No executor ran for this event.'));
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('span', {}, label), h('b', {}, value));
}

function deliveryCard(d) {
  const target = d.endpoint_id ? h('span', {}, 'endpoint ', link(`endpoints/${enc(d.endpoint_id)}`, d.endpoint_id))
    : h('span', {}, 'executor ', link(`executors/${enc(d.executor)}`, d.executor));
  const retry = can('admin') && h('button', {
    class: 'secondary', type: 'button', 'data-delivery': d.id,
    onclick: () => act(async () => {
      await api('POST', orgPath(`/deliveries/${enc(d.id)}/retry`));
      // Show the trace again once the new attempt is recorded (or after 15 s).
      for (let i = 0; i < 30; i += 1) {
        await new Promise((r) => setTimeout(r, 500));
        const now = await get(`/deliveries/${enc(d.id)}`);
        if (now.attempt_count > d.attempt_count && !now.in_flight) break;
      }
      route();
    }),
  }, d.status === 'delivered' ? 'Send again' : 'Retry now');
  const attempts = (d.attempts || []).map((a) => h('tr', {},
    h('td', {}, when(a.at)),
    h('td', {}, a.status_code === null || a.status_code === undefined ? '—' : String(a.status_code)),
    h('td', {}, ms(a.duration_ms)),
    h('td', {}, a.error || '', a.waited ? h('div', { class: 'muted' }, `waited: ${a.waited}`) : null,
      a.retry_reason ? h('div', { class: 'muted' }, `next: ${a.retry_reason}`) : null),
    h('td', {}, a.request_headers ? h('details', {}, h('summary', {}, 'headers'), json(a.request_headers)) : null,
      a.response_body ? h('details', {}, h('summary', {}, 'response'), h('pre', {}, a.response_body)) : null)));
  return h('div', { class: 'card delivery', 'data-delivery': d.id },
    h('div', { class: 'row' }, badge(d.status), target,
      h('span', { class: 'muted' }, `${d.attempt_count} attempt(s)`),
      d.next_attempt_at ? h('span', { class: 'muted' }, `next at ${when(d.next_attempt_at)}`) : null,
      d.ordering_key ? h('span', { class: 'muted' }, `key ${d.ordering_key}`) : null, retry),
    table(['At', 'Status', 'Took', 'Error / why', 'Request and response'], attempts, 'Not attempted yet.'));
}

function runCard(r) {
  return h('div', { class: 'card run' },
    h('div', { class: 'row' }, badge(r.status === 'succeeded' ? 'ok' : r.status), h('span', {}, `${r.executor} v${r.version}`),
      h('span', { class: 'muted' }, ms(r.duration_ms)), h('span', { class: 'muted' }, when(r.at)),
      r.hook ? h('span', { class: 'muted' }, `hook ${r.hook}`) : null),
    r.error ? h('p', { class: 'error' }, `Failed: ${r.error}`) : null,
    h('div', { class: 'grid' },
      h('div', {}, h('h3', {}, 'Input'), json(r.input)),
      h('div', {}, h('h3', {}, 'Output'), json(r.output))),
    h('h3', {}, 'Logs'), r.logs.length ? h('pre', { class: 'logs' }, r.logs.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')) : h('p', { class: 'muted' }, 'none'),
    r.stderr ? [h('h3', {}, 'Standard error'), h('pre', {}, r.stderr)] : null);
}

// ---- endpoints ----------------------------------------------------------------------------

async function endpointsPage(main) {
  const eps = await list('/endpoints');
  put(main, h('h1', {}, 'Endpoints'),
    table(['Endpoint', 'URL', 'Description', 'State', 'Profile'], eps.map((ep) => h('tr', {},
      h('td', {}, link(`endpoints/${enc(ep.id)}`, ep.id)), h('td', { class: 'mono' }, ep.url),
      h('td', {}, ep.description), h('td', {}, badge(ep.enabled ? 'enabled' : 'disabled'), ep.disabled_reason ? ` ${ep.disabled_reason}` : ''),
      h('td', {}, ep.profile))), 'No endpoints yet.'));
  if (!can('admin')) return;
  const form = h('form', { class: 'card', id: 'new-endpoint' }, h('h2', {}, 'New endpoint'),
    h('div', { class: 'row' },
      h('label', {}, 'URL', h('input', { name: 'url', type: 'url', required: true, size: 40 })),
      h('label', {}, 'Description', h('input', { name: 'description' })),
      h('label', {}, 'Event types (comma-separated; patterns allowed)', h('input', { name: 'types', value: '*' })),
      h('button', { type: 'submit' }, 'Create')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(form);
    act(async () => {
      const ep = await api('POST', orgPath('/endpoints'), { url: f.url, description: f.description || '' });
      const types = (f.types || '*').split(',').map((s) => s.trim()).filter(Boolean);
      await api('POST', orgPath('/subscriptions'), { endpoint_id: ep.id, event_types: types });
      location.hash = `#/endpoints/${enc(ep.id)}`;
    });
  });
  put(main, form);
}

async function endpointPage(main, id) {
  const [ep, health, subs] = await Promise.all([
    get(`/endpoints/${enc(id)}`), get(`/endpoints/${enc(id)}/health`), list('/subscriptions'),
  ]);
  const w = health.window;
  const rate = w.success_rate === null || w.success_rate === undefined ? '—' : `${(w.success_rate * 100).toFixed(1)} %`;
  put(main, h('p', {}, link('endpoints', '← Endpoints')),
    h('h1', {}, ep.description || ep.id, ' ', badge(ep.enabled ? 'enabled' : 'disabled')),
    h('p', { class: 'mono' }, ep.url),
    ep.disabled_reason ? h('p', { class: 'error' }, `Disabled: ${ep.disabled_reason}`) : null,
    h('h2', {}, 'Health'),
    h('div', { class: 'grid', id: 'health' },
      stat('Success rate', rate), stat('Attempts in window', w.attempts),
      stat('p50 latency', ms(w.p50_ms)), stat('p99 latency', ms(w.p99_ms)),
      stat('Failures in a row', health.consecutive_failures),
      stat('Last success', when(health.last_success_at)), stat('Last failure', when(health.last_failure_at))),
    health.last_error ? h('p', { class: 'muted' }, `Last error: ${health.last_error}`) : null,
    h('h2', {}, 'Subscriptions'),
    table(['Subscription', 'Event types', 'Mode'], subs.filter((s) => s.endpoint_id === id).map((s) => h('tr', {},
      h('td', { class: 'mono' }, s.id), h('td', {}, (s.event_types || []).join(', ')), h('td', {}, s.mode || 'async'))), 'No subscription sends events here.'),
    h('h2', {}, 'Settings'), json({ signing: ep.signing, profile: ep.profile, timeout_ms: ep.timeout_ms, retry_schedule_s: ep.retry_schedule_s,
      max_in_flight: ep.max_in_flight, max_rps: ep.max_rps, ordered: ep.ordered, headers: ep.headers, public_keys: ep.public_keys }));
  if (!can('admin')) return;

  const edit = h('form', { class: 'card', id: 'edit-endpoint' }, h('h2', {}, 'Edit'),
    h('div', { class: 'row' },
      h('label', {}, 'URL', h('input', { name: 'url', type: 'url', value: ep.url, size: 40 })),
      h('label', {}, 'Description', h('input', { name: 'description', value: ep.description })),
      h('label', {}, 'Timeout (ms)', h('input', { name: 'timeout_ms', type: 'number', value: ep.timeout_ms })),
      h('label', {}, 'Max in flight', h('input', { name: 'max_in_flight', type: 'number', value: ep.max_in_flight })),
      h('label', {}, 'Max requests/s', h('input', { name: 'max_rps', type: 'number', value: ep.max_rps === null ? '' : ep.max_rps })),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'enabled', checked: ep.enabled }), 'Enabled'),
      h('button', { type: 'submit' }, 'Save')));
  edit.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(edit);
    const patch = { url: f.url, description: f.description || '', enabled: f.enabled };
    for (const k of ['timeout_ms', 'max_in_flight', 'max_rps']) if (f[k] !== undefined) patch[k] = Number(f[k]);
    act(async () => { await api('PATCH', orgPath(`/endpoints/${enc(id)}`), patch); route(); }, 'Saved.');
  });

  const secretOut = h('div');
  const rotate = h('div', { class: 'card' }, h('h2', {}, 'Signing secret'),
    h('p', { class: 'muted' }, 'A new secret signs from now on; the old one also signs for 24 hours so the receiver can switch.'),
    h('button', { type: 'button', id: 'rotate', onclick: () => act(async () => {
      const expires = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
      const r = await api('POST', orgPath(`/endpoints/${enc(id)}/rotate-secret`), { old_expires_at: expires });
      secretOut.replaceChildren(h('p', {}, 'The new secret, shown once:'), h('div', { class: 'once mono' }, r.secret || JSON.stringify(r.public_keys || r)));
    }) }, 'Rotate secret'), secretOut);

  const progress = h('div', { id: 'replay-progress' });
  const replay = h('form', { class: 'card', id: 'replay' }, h('h2', {}, 'Replay a time range'),
    h('p', { class: 'muted' }, 'Sends this endpoint every event it received in the range again.'),
    h('div', { class: 'row' },
      h('label', {}, 'Since', h('input', { name: 'since', type: 'datetime-local', required: true })),
      h('label', {}, 'Until (optional)', h('input', { name: 'until', type: 'datetime-local' })),
      h('button', { type: 'submit' }, 'Replay')), progress);
  replay.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(replay);
    act(async () => {
      const r = await api('POST', orgPath(`/endpoints/${enc(id)}/replay`), { since: rfc3339(f.since), until: rfc3339(f.until) });
      watchReplay(id, r.deliveries, progress);
    });
  });

  const del = h('button', { class: 'danger', type: 'button', onclick: () => {
    if (!confirm('Delete this endpoint? Its pending deliveries are dropped.')) return;
    act(async () => { await api('DELETE', orgPath(`/endpoints/${enc(id)}`)); location.hash = '#/endpoints'; });
  } }, 'Delete endpoint');
  put(main, edit, rotate, replay, h('p', {}, del));
}

/** Shows a replay's progress: its deliveries still pending, until none is. */
function watchReplay(id, total, out) {
  const bar = h('progress', { max: Math.max(total, 1), value: 0 });
  const text = h('span', { class: 'muted' });
  out.replaceChildren(bar, ' ', text);
  let stopped = false;
  leave = () => { stopped = true; };
  const tick = async () => {
    if (stopped) return;
    const page = await get(`/deliveries?endpoint_id=${enc(id)}&status=pending&limit=500`);
    const pending = page.data.length;
    const done = Math.max(total - pending, 0);
    bar.value = done;
    text.textContent = `${done} of ${total} sent${pending >= 500 ? ' (500+ pending)' : ''}`;
    if (pending === 0) { text.textContent = `${total} of ${total} sent — done`; return; }
    setTimeout(() => tick().catch((e) => flash(e.message)), 1000);
  };
  tick().catch((e) => flash(e.message));
}

// ---- executors ----------------------------------------------------------------------------

const LANGUAGES = ['javascript', 'python', 'php', 'node'];
const STARTERS = {
  javascript: 'function main(input, sdk) {\n  sdk.log("got", input);\n  return { ok: true };\n}\n',
  node: 'async function main(input, sdk) {\n  sdk.log("got", input);\n  return { ok: true };\n}\n',
  python: 'def main(input, sdk):\n    sdk.log("got", input)\n    return {"ok": True}\n',
  php: '<?php\nfunction main($input, $sdk) {\n    $sdk->log("got", $input);\n    return ["ok" => true];\n}\n',
};

async function executorsPage(main) {
  const all = await list('/executors');
  put(main, h('h1', {}, 'Executors'),
    table(['Name', 'Kind', 'Version', 'Description', 'Saved'], all.map((x) => h('tr', {},
      h('td', {}, link(`executors/${enc(x.name)}`, x.name)),
      h('td', {}, x.spec.type === 'code' ? x.spec.language : `${x.spec.method || ''} API call`),
      h('td', {}, `v${x.version}`), h('td', {}, x.description), h('td', {}, when(x.created_at)))), 'No executors yet.'));
  if (!can('admin')) return;
  const lang = h('select', { name: 'language' }, LANGUAGES.map((l) => h('option', { value: l }, l)));
  const source = h('textarea', { name: 'source', class: 'source', spellcheck: 'false' }, STARTERS.javascript);
  lang.addEventListener('change', () => { source.value = STARTERS[lang.value]; });
  const form = h('form', { class: 'card', id: 'new-executor' }, h('h2', {}, 'New code executor'),
    h('div', { class: 'row' }, h('label', {}, 'Name', h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9_.:@-]+' })),
      h('label', {}, 'Language', lang), h('label', {}, 'Description', h('input', { name: 'description' }))),
    h('label', {}, 'Source', source), h('p', {}, h('button', { type: 'submit' }, 'Create')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(form);
    act(async () => {
      await api('PUT', orgPath(`/executors/${enc(f.name)}`), { type: 'code', language: f.language, source: source.value, description: f.description || '' });
      location.hash = `#/executors/${enc(f.name)}`;
    });
  });
  put(main, form);
}

async function executorPage(main, name) {
  const [x, versions] = await Promise.all([get(`/executors/${enc(name)}`), list(`/executors/${enc(name)}/versions`)]);
  const code = x.spec.type === 'code';
  put(main, h('p', {}, link('executors', '← Executors')),
    h('h1', {}, name, ' ', h('span', { class: 'muted' }, `v${x.version} · ${code ? x.spec.language : 'API call'}`)),
    x.description ? h('p', {}, x.description) : null);

  const editor = h('form', { class: 'card', id: 'edit-executor' }, h('h2', {}, code ? 'Source' : 'Request'));
  if (code) {
    const source = h('textarea', { name: 'source', class: 'source', spellcheck: 'false', readonly: !can('admin') }, x.spec.source);
    editor.append(source);
    if (can('admin')) {
      editor.append(h('div', { class: 'row' },
        h('label', {}, 'Description', h('input', { name: 'description', value: x.description })),
        h('button', { type: 'submit' }, 'Save as a new version')));
      editor.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const body = { ...x.spec, source: source.value, description: editor.elements.description.value };
        if (x.parameters) body.parameters = x.parameters;
        if (x.retries !== null && x.retries !== undefined) body.retries = x.retries;
        act(async () => { await api('PUT', orgPath(`/executors/${enc(name)}`), body); route(); }, 'Saved as a new version.');
      });
    }
  } else {
    editor.append(json(x.spec));
  }

  const input = h('textarea', { name: 'input', rows: 6, spellcheck: 'false' }, '{}');
  const result = h('div', { id: 'run-result' });
  const preview = h('form', { class: 'card', id: 'run-executor' }, h('h2', {}, 'Run with this input'),
    h('p', { class: 'muted' }, 'Runs the saved version now, in the same sandbox as event hooks; the run is kept in the trace.'),
    input, h('p', {}, h('button', { type: 'submit', disabled: !can('admin') }, 'Run')), result);
  preview.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const body = { input: parseJson(input.value, 'the input') };
      result.replaceChildren(h('p', { class: 'muted' }, 'Running…'));
      const run = await api('POST', orgPath(`/executors/${enc(name)}/run`), body);
      result.replaceChildren(runCard(run));
    });
  });

  put(main, editor, preview, h('h2', {}, 'Versions'),
    table(['Version', 'Saved', 'Description', ''], versions.map((v) => h('tr', {},
      h('td', {}, `v${v.version}`), h('td', {}, when(v.created_at)), h('td', {}, v.description),
      h('td', {}, h('details', {}, h('summary', {}, 'what it ran'), json(v.spec)))))));
}

// ---- hooks, schedules, secrets, keys -------------------------------------------------------

async function hooksPage(main) {
  const hooks = await list('/hooks');
  put(main, h('h1', {}, 'Synchronous hooks'));
  if (!hooks.length) put(main, h('p', { class: 'muted' }, 'No hooks yet (PUT /v1/orgs/{org}/hooks/{name}).'));
  for (const hk of hooks) {
    const input = h('textarea', { rows: 3, spellcheck: 'false' }, '{}');
    const out = h('div');
    const call = h('form', { class: 'row' }, h('label', {}, 'Test call with input', input),
      h('button', { type: 'submit', disabled: !can('publisher') }, 'Call'),
      h('button', { type: 'button', class: 'secondary', disabled: !can('admin'), onclick: () => act(async () => {
        await api('DELETE', orgPath(`/hooks/${enc(hk.name)}/cache`));
      }, `The cache of ${hk.name} is empty.`) }, 'Empty cache'));
    call.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(async () => {
        const r = await api('POST', orgPath(`/hooks/${enc(hk.name)}/call`), parseJson(input.value, 'the input'));
        out.replaceChildren(h('p', {}, `cache: ${r.cache} · ${ms(r.duration_ms)} · run ${r.run_id}`), json(r.output));
      });
    });
    put(main, h('div', { class: 'card hook' }, h('h2', {}, hk.name),
      h('p', { class: 'muted' }, `${hk.description || ''} → executor `, link(`executors/${enc(hk.executor)}`, hk.executor),
        ` · timeout ${hk.timeout_ms} ms · cache ${hk.cache_ttl_s ? `${hk.cache_ttl_s} s` : 'off'}`),
      call, out));
  }
}

async function schedulesPage(main) {
  const schedules = await list('/schedules');
  put(main, h('h1', {}, 'Schedules'),
    table(['Name', 'Cron', 'Event type', 'State', 'Next fire times', 'Last fired'], schedules.map((s) => h('tr', {},
      h('td', {}, s.name, s.description ? h('div', { class: 'muted' }, s.description) : null),
      h('td', { class: 'mono' }, `${s.cron} (${s.timezone})`), h('td', {}, s.event_type),
      h('td', {}, badge(s.enabled ? 'enabled' : 'disabled')),
      h('td', {}, s.next_fire_times.slice(0, 3).map((t) => h('div', {}, when(t)))),
      h('td', {}, when(s.last_fired_at)))), 'No schedules yet (PUT /v1/orgs/{org}/schedules/{name}).'));
}

async function secretsPage(main) {
  const secrets = await list('/secrets');
  put(main, h('h1', {}, 'Secrets'),
    h('p', { class: 'muted' }, 'Values are encrypted at rest and never shown again; executors read them with sdk.secret(name) or {{secret.NAME}}.'),
    table(['Name', 'Updated', ''], secrets.map((s) => h('tr', {}, h('td', { class: 'mono' }, s.name), h('td', {}, when(s.updated_at)),
      h('td', {}, can('admin') ? h('button', { class: 'danger', type: 'button', onclick: () => {
        if (confirm(`Delete the secret ${s.name}?`)) act(async () => { await api('DELETE', orgPath(`/secrets/${enc(s.name)}`)); route(); });
      } }, 'Delete') : null))), 'No secrets yet.'));
  if (!can('admin')) return;
  const form = h('form', { class: 'card row', id: 'set-secret' },
    h('label', {}, 'Name', h('input', { name: 'name', required: true })),
    h('label', {}, 'Value', h('input', { name: 'value', type: 'password', required: true, autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Set or replace'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = fields(form);
    act(async () => { await api('PUT', orgPath(`/secrets/${enc(f.name)}`), { value: f.value }); route(); });
  });
  put(main, form);
}

async function keysPage(main) {
  put(main, h('h1', {}, 'API keys'));
  if (!can('admin')) { put(main, h('p', { class: 'muted' }, 'Only an admin key lists and manages keys.')); return; }
  const keys = await list('/keys');
  const shown = h('div');
  put(main, table(['Prefix', 'Role', 'Created', 'Last used', ''], keys.map((k) => h('tr', {},
    h('td', { class: 'mono' }, `${k.prefix}…`), h('td', {}, k.role), h('td', {}, when(k.created_at)), h('td', {}, when(k.last_used_at)),
    h('td', {}, h('button', { class: 'danger', type: 'button', onclick: () => {
      if (confirm('Revoke this key? Whoever uses it is refused from now on.')) act(async () => { await api('DELETE', orgPath(`/keys/${enc(k.id)}`)); route(); });
    } }, 'Revoke')))), 'No keys.'));
  const form = h('form', { class: 'card row', id: 'new-key' },
    h('label', {}, 'Role', h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r }, r)))),
    h('button', { type: 'submit' }, 'Create key'), shown);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const k = await api('POST', orgPath('/keys'), { role: fields(form).role });
      shown.replaceChildren(h('p', {}, `New ${k.role} key, shown once:`), h('div', { class: 'once mono', id: 'new-key-value' }, k.key));
    });
  });
  put(main, form);
}

// ---- start --------------------------------------------------------------------------------

document.getElementById('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);
if (session.key) chrome();
route();
