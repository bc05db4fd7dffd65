// Policies: the active set and its versions, a diff between two versions,
// a dry-run check (principal, action, resource, context → decision and the
// policies that determined it), applying a new set with a reason, and
// rolling back to an earlier version.

import { api } from '../api.js';
import { attempt, field, h, json, messageArea, replace, section, select, table, time } from '../ui.js';
import { diffView } from './agents.js';

const ACTIONS = ['discover', 'read_card', 'send_message', 'stream', 'get_task', 'cancel_task', 'register_agent', 'update_agent', 'set_trust', 'administer_policy', 'run_graph', 'store_graph', 'read_graph', 'read_metrics', 'manage_model_agent', 'read_model_agent', 'manage_secret', 'create_plan'];

export async function render(main) {
  const messages = messageArea();
  replace(main, h('h1', {}, 'Policies'), messages.element);
  const listing = await attempt(messages, () => api('GET', '/v1/policies'));
  if (!listing) return;
  const versions = [...(listing.versions || [])].sort((a, b) => a.version - b.version);
  const active = listing.active;
  const activeText = active !== null && active !== undefined ? await attempt(messages, () => api('GET', `/v1/policies/${active}`)) : null;
  const refresh = () => render(main);

  main.append(
    h('p', { id: 'active-version' }, active !== null && active !== undefined ? `Active version: ${active}` : 'No stored version is active (the shipped set decides).'),
    section(
      'Versions',
      table(
        [
          ['Version', (version) => version.version],
          ['Active', (version) => (version.active ? 'active' : '')],
          ['Author', (version) => version.author],
          ['Reason', (version) => version.reason],
          ['Written', (version) => time(version.created_at)],
        ],
        [...versions].reverse(),
      ),
    ),
    section('Roll back', rollbackForm(versions, refresh)),
    section('Diff between versions', diffForm(versions, messages)),
    section('Apply a new set', applyForm(activeText?.text || '', refresh)),
    section('Dry-run check', checkForm()),
  );
}

function rollbackForm(versions, refresh) {
  const messages = messageArea();
  const options = versions.filter((version) => !version.active).map((version) => [String(version.version), `v${version.version} · ${version.reason || 'no reason'}`]);
  // The default: the newest version older than the active one.
  const active = versions.find((version) => version.active)?.version ?? Infinity;
  const previous = versions.filter((version) => version.version < active).pop();
  const version = select('version', options, previous ? String(previous.version) : options[options.length - 1]?.[0]);
  const reason = h('input', { type: 'text', name: 'reason', required: true, autocomplete: 'off' });
  const form = h('form', { class: 'inline rollback', 'aria-label': 'Roll back policies' }, field('Version', version), field('Reason (required)', reason), h('button', { type: 'submit', disabled: options.length === 0 }, 'Roll back'), messages.element);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const done = await attempt(messages, () => api('POST', '/v1/policies:rollback', { version: Number(version.value), reason: reason.value.trim() }));
    if (done) await refresh();
  });
  return form;
}

function diffForm(versions, messages) {
  const options = versions.map((version) => [String(version.version), `v${version.version}${version.active ? ' (active)' : ''}`]);
  const left = select('from', options, options.length > 1 ? options[options.length - 2][0] : options[0]?.[0]);
  const right = select('to', options, options[options.length - 1]?.[0]);
  const output = h('div', { class: 'diff-output' });
  const form = h('form', { class: 'inline', 'aria-label': 'Compare policy versions' }, field('From', left), field('To', right), h('button', { type: 'submit' }, 'Diff'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const [before, after] = await Promise.all([left.value, right.value].map((version) => attempt(messages, () => api('GET', `/v1/policies/${version}`))));
    if (before && after) replace(output, diffView(before.text || '', after.text || ''));
  });
  return h('div', {}, form, output);
}

function applyForm(current, refresh) {
  const messages = messageArea();
  const text = h('textarea', { name: 'policies', rows: 16, spellcheck: 'false', class: 'code' }, current);
  const reason = h('input', { type: 'text', name: 'reason', required: true, autocomplete: 'off' });
  const form = h('form', { class: 'apply-policy', 'aria-label': 'Apply policies' }, field('Cedar policies', text), field('Reason (required)', reason), h('button', { type: 'submit' }, 'Apply'), messages.element);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const stored = await attempt(messages, () => api('PUT', '/v1/policies', { policies: text.value, reason: reason.value.trim() }));
    if (stored) await refresh();
  });
  return form;
}

function checkForm() {
  const messages = messageArea();
  const principal = h('textarea', { name: 'principal', rows: 3, spellcheck: 'false', class: 'code' }, JSON.stringify({ subject: 'alice', org: 'example.org', scopes: ['agent:call'], method: 'jwt' }));
  const action = select('action', ACTIONS, 'send_message');
  const resource = h('textarea', { name: 'resource', rows: 3, spellcheck: 'false', class: 'code' }, JSON.stringify({ type: 'agent', id: 'convergio://agents/echo', org: 'example.org', trust: 'registered' }));
  const context = h('textarea', { name: 'context', rows: 2, spellcheck: 'false', class: 'code' }, '{}');
  const output = h('div', { class: 'check-output', 'aria-live': 'polite' });
  const form = h('form', { class: 'check-policy', 'aria-label': 'Dry-run check' }, field('Principal (JSON)', principal), field('Action', action), field('Resource (JSON)', resource), field('Context (JSON)', context), h('button', { type: 'submit' }, 'Check'), messages.element, output);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    messages.clear();
    let body;
    try {
      body = { principal: JSON.parse(principal.value), action: action.value, resource: JSON.parse(resource.value), context: JSON.parse(context.value || '{}') };
    } catch (error) {
      messages.show(h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'Not JSON'), h('p', {}, String(error.message))));
      return;
    }
    const answer = await attempt(messages, () => api('POST', '/v1/policies:check', body));
    if (!answer) return;
    replace(
      output,
      h('p', { class: `decision decision-${answer.decision}`, id: 'check-decision' }, `Decision: ${answer.decision} (version ${answer.version ?? 'shipped'})`),
      h('p', {}, `Determined by: ${(answer.determining || []).join(', ') || 'no policy (default deny)'}`),
      (answer.errors || []).length ? json(answer.errors) : null,
    );
  });
  return form;
}
