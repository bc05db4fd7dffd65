// Agents: discovery with every filter the API has, an agent's card (skills,
// interfaces as served through the gateway, signatures), its versions with
// a diff between two, its trust history and a trust change with a reason.

import { api, get } from '../api.js';
import { diffLines } from '../diff.js';
import { attempt, field, formValues, h, json, messageArea, replace, routeHref, section, select, table, time } from '../ui.js';

const TRUST = ['untrusted', 'registered', 'verified', 'trusted', 'internal'];
const ROLES = ['worker', 'supervisor', 'router', 'planner', 'critic'];

export async function render(main, route) {
  if (route.rest.length && route.rest[0]) return renderAgent(main, route.rest[0]);
  return renderSearch(main);
}

function input(name, attrs = {}) {
  return h('input', { name, type: 'text', autocomplete: 'off', ...attrs });
}

async function renderSearch(main) {
  const messages = messageArea();
  const results = h('div', { class: 'results', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Search agents' },
    field('Free text', input('q', { type: 'search' })),
    field('Skill', input('skill')),
    field('Tag', input('tag')),
    field('Input mode', input('input_mode', { placeholder: 'text/plain' })),
    field('Output mode', input('output_mode')),
    field('Organisation', input('org')),
    field('Minimum trust', select('min_trust', [['', 'any'], ...TRUST])),
    field('Role', select('role', [['', 'any'], ...ROLES])),
    field('Page size', input('page_size', { type: 'number', min: 1, max: 100, value: 50 })),
    h('div', { class: 'checks' }, field('Federated (ask peers too)', h('input', { type: 'checkbox', name: 'federated' })), field('Include deregistered', h('input', { type: 'checkbox', name: 'include_deleted' }))),
    h('button', { type: 'submit' }, 'Search'),
  );
  replace(main, h('h1', {}, 'Agents'), form, messages.element, results);

  let pageToken = null;
  const search = async (append) => {
    messages.clear();
    const params = formValues(form);
    if (append && pageToken) params.page_token = pageToken;
    const listing = await attempt(messages, () => get('/v1/agents', params));
    if (!listing) return;
    pageToken = listing.next_page_token || null;
    const rows = listing.agents || [];
    // A federated answer says where each agent came from and which peers
    // did not answer.
    const federated = Array.isArray(listing.peers) || Array.isArray(listing.partial);
    const list = table(
      [
        ['Name', (agent) => (agent.provenance?.source === 'peer' ? agent.name : h('a', { href: routeHref('agents', agent.id) }, agent.name))],
        ['Organisation', (agent) => agent.org],
        ...(federated ? [['Source', (agent) => (agent.provenance?.source === 'peer' ? `peer ${agent.provenance.org}` : 'local')]] : []),
        ['Role', (agent) => agent.role],
        ['Trust', (agent) => h('span', { class: `trust trust-${agent.trust}` }, agent.trust)],
        ['Skills', (agent) => (agent.card?.skills || []).map((skill) => skill.name || skill.id).join(', ')],
        ['Version', (agent) => agent.version],
        ['Updated', (agent) => time(agent.updated_at)],
      ],
      rows,
    );
    list.classList.add('agent-list');
    const more = pageToken ? h('button', { type: 'button', class: 'more', onclick: () => search(true) }, 'Next page') : null;
    const partial = (listing.partial || []).map((peer) => (typeof peer === 'string' ? peer : peer.peer || peer.domain || JSON.stringify(peer)));
    replace(
      results,
      h('p', { class: 'count' }, `${rows.length} agents${pageToken ? ' (more on the next page)' : ''}`),
      federated ? h('p', { class: 'federation-note' }, `Peers that answered: ${(listing.peers || []).map((peer) => peer.peer).join(', ') || 'none'}.`, partial.length ? ` Peers that did not: ${partial.join(', ')}.` : '') : null,
      list,
      more,
    );
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    search(false);
  });
  await search(false);
}

async function renderAgent(main, id) {
  const messages = messageArea();
  replace(main, h('p', { class: 'back' }, h('a', { href: '#/agents' }, '← All agents')), messages.element);
  const record = await attempt(messages, () => api('GET', `/v1/agents/${encodeURIComponent(id)}`));
  if (!record) return;
  const card = record.card || {};
  main.append(
    h('h1', {}, card.name || record.name),
    h('p', {}, card.description || ''),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Id'), h('dd', {}, record.id),
      h('dt', {}, 'Organisation'), h('dd', {}, record.org),
      h('dt', {}, 'Role'), h('dd', {}, record.role),
      h('dt', {}, 'Trust'), h('dd', { id: 'agent-trust' }, record.trust),
      h('dt', {}, 'Version'), h('dd', {}, `${record.version} (card ${card.version || '?'})`),
      h('dt', {}, 'Provider'), h('dd', {}, card.provider ? `${card.provider.organization || ''} ${card.provider.url || ''}` : '—'),
      h('dt', {}, 'Modes'), h('dd', {}, `in ${(card.defaultInputModes || []).join(', ')} · out ${(card.defaultOutputModes || []).join(', ')}`),
      record.deleted_at ? [h('dt', {}, 'Deregistered'), h('dd', {}, time(record.deleted_at))] : null,
    ),
  );
  main.append(
    section(
      'Skills',
      table(
        [
          ['Id', (skill) => skill.id],
          ['Name', (skill) => skill.name],
          ['Description', (skill) => skill.description],
          ['Tags', (skill) => (skill.tags || []).join(', ')],
          ['Examples', (skill) => (skill.examples || []).join(' · ')],
        ],
        card.skills || [],
      ),
    ),
  );
  const served = h('div', {}, h('p', {}, 'Loading the card as the gateway serves it…'));
  main.append(section('Interfaces (as served through the gateway)', served));
  main.append(section('Signatures', signatures(record)));
  const versions = h('div');
  const history = h('div');
  main.append(section('Versions', versions), section('Trust', trustForm(record, history, versions), history));
  await Promise.all([servedCard(record, served), drawVersions(record, versions), drawHistory(record, history)]);
}

async function servedCard(record, target) {
  const messages = messageArea();
  const path = `/agents/${encodeURIComponent(record.name)}/.well-known/agent-card.json`;
  const card = await attempt(messages, () => api('GET', path));
  if (!card) {
    replace(target, messages.element);
    return;
  }
  const interfaces = card.supportedInterfaces || card.additionalInterfaces || [];
  replace(
    target,
    table(
      [
        ['URL', (entry) => entry.url],
        ['Binding', (entry) => entry.protocolBinding || entry.transport || ''],
        ['Version', (entry) => entry.protocolVersion || ''],
      ],
      interfaces.length ? interfaces : [{ url: card.url, protocolBinding: card.preferredTransport }],
    ),
    h('details', {}, h('summary', {}, 'The served card'), json(card)),
  );
}

function signatures(record) {
  const list = Array.isArray(record.card?.signatures) ? record.card.signatures : [];
  if (!list.length) return h('p', {}, 'Unsigned card.');
  const verifies = record.trust === 'verified';
  return h(
    'div',
    {},
    table(
      [
        ['Key', (signature) => header(signature).kid || '—'],
        ['Algorithm', (signature) => header(signature).alg || '—'],
        ['Verifies', () => (verifies ? `yes, with a key of ${record.org}` : 'not shown as verified')],
      ],
      list,
    ),
    h('p', { class: 'note' }, verifies
      ? 'Trust “verified” means the registry checked this signature against a key of the owning organisation.'
      : 'The registry refuses a card whose signature fails with a key it holds; a signature by a key it does not hold is stored unverified.'),
  );
}

function header(signature) {
  try {
    const text = signature.protected.replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(text + '='.repeat((4 - (text.length % 4)) % 4)));
  } catch {
    return {};
  }
}

async function drawVersions(record, target) {
  const messages = messageArea();
  const answer = await attempt(messages, () => api('GET', `/v1/agents/${encodeURIComponent(record.id)}/versions`));
  if (!answer) {
    replace(target, messages.element);
    return;
  }
  const versions = [...(answer.versions || [])].sort((a, b) => a.version - b.version);
  const options = versions.map((version) => [String(version.version), `v${version.version} · ${version.trust} · ${new Date(version.updated_at).toLocaleString()}`]);
  const left = select('from', options, options.length > 1 ? options[options.length - 2][0] : options[0]?.[0]);
  const right = select('to', options, options[options.length - 1]?.[0]);
  const output = h('div', { class: 'diff-output' });
  const show = () => {
    const byNumber = (value) => versions.find((version) => String(version.version) === value);
    const before = byNumber(left.value);
    const after = byNumber(right.value);
    if (!before || !after) return;
    const strip = (version) => JSON.stringify({ card: version.card, trust: version.trust, role: version.role, upstreams: version.upstreams }, null, 2);
    replace(output, diffView(strip(before), strip(after)));
  };
  replace(
    target,
    table(
      [
        ['Version', (version) => version.version],
        ['Trust', (version) => version.trust],
        ['Card version', (version) => version.card?.version || ''],
        ['Written', (version) => time(version.updated_at)],
      ],
      versions,
    ),
    h('form', { class: 'inline', 'aria-label': 'Compare versions', onsubmit: (event) => { event.preventDefault(); show(); } }, field('From', left), field('To', right), h('button', { type: 'submit' }, 'Diff')),
    output,
  );
}

/** A diff of two texts: changed lines with three lines of context around them. */
export function diffView(before, after) {
  const lines = diffLines(before, after);
  const changed = lines.filter(([kind]) => kind !== ' ').length;
  const near = new Array(lines.length).fill(false);
  lines.forEach(([kind], index) => {
    if (kind === ' ') return;
    for (let at = Math.max(0, index - 3); at <= Math.min(lines.length - 1, index + 3); at += 1) near[at] = true;
  });
  const shown = [];
  let skipped = 0;
  lines.forEach(([kind, line], index) => {
    if (!near[index]) {
      skipped += 1;
      return;
    }
    if (skipped) shown.push(h('span', { class: 'skip' }, `… ${skipped} unchanged lines\n`));
    skipped = 0;
    shown.push(h('span', { class: kind === '+' ? 'add' : kind === '-' ? 'del' : 'same' }, `${kind} ${line}\n`));
  });
  if (skipped && shown.length) shown.push(h('span', { class: 'skip' }, `… ${skipped} unchanged lines\n`));
  return h('div', { class: 'diff' }, h('p', {}, changed ? `${changed} changed lines` : 'No differences'), changed ? h('pre', { tabindex: 0 }, shown) : null);
}

function trustForm(record, history, versions) {
  const messages = messageArea();
  const level = select('level', TRUST, record.trust);
  const reason = h('input', { type: 'text', name: 'reason', required: true, minlength: 1, maxlength: 1000, autocomplete: 'off' });
  const form = h(
    'form',
    { class: 'inline trust-form', 'aria-label': 'Change trust' },
    field('New trust level', level),
    field('Reason (required)', reason),
    h('button', { type: 'submit' }, 'Set trust'),
    messages.element,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const updated = await attempt(messages, () =>
      api('PUT', `/v1/agents/${encodeURIComponent(record.id)}/trust`, { level: level.value, reason: reason.value.trim() }),
    );
    if (!updated) return;
    messages.ok(`Trust is now ${updated.trust}.`);
    const shown = document.getElementById('agent-trust');
    if (shown) shown.textContent = updated.trust;
    reason.value = '';
    // A trust change is a new version: both lists are read again.
    await Promise.all([drawHistory(updated, history), drawVersions(updated, versions)]);
  });
  return form;
}

async function drawHistory(record, target) {
  const messages = messageArea();
  const answer = await attempt(messages, () => api('GET', `/v1/agents/${encodeURIComponent(record.id)}/trust`));
  if (!answer) {
    replace(target, messages.element);
    return;
  }
  const changes = answer.changes || [];
  const list = table(
    [
      ['When', (change) => time(change.at)],
      ['By', (change) => change.actor?.subject || ''],
      ['From', (change) => change.from],
      ['To', (change) => change.to],
      ['Reason', (change) => change.reason],
    ],
    changes,
    'Trust history',
  );
  list.classList.add('trust-history');
  replace(target, changes.length ? list : h('p', {}, 'No trust changes yet.'));
}
