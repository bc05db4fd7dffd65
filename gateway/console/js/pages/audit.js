// Audit: the decision and change log filtered by time, principal,
// decision and action, with the hash chain's verification status.

import { api, get } from '../api.js';
import { attempt, field, formValues, h, messageArea, replace, section, select, table, time } from '../ui.js';

export async function render(main) {
  const messages = messageArea();
  const chain = h('div', { class: 'chain', 'aria-live': 'polite' });
  const results = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log' },
    field('Principal', h('input', { type: 'text', name: 'principal', autocomplete: 'off' })),
    field('Action', h('input', { type: 'text', name: 'action', autocomplete: 'off', placeholder: 'set_trust' })),
    field('Decision', select('decision', [['', 'any'], 'allow', 'deny'])),
    field('Since', h('input', { type: 'datetime-local', name: 'since' })),
    field('Until', h('input', { type: 'datetime-local', name: 'until' })),
    field('Limit', h('input', { type: 'number', name: 'limit', min: 1, max: 1000, value: 100 })),
    h('button', { type: 'submit' }, 'Filter'),
  );
  const verify = h('button', { type: 'button' }, 'Verify the chain again');
  replace(main, h('h1', {}, 'Audit'), section('Chain', chain, verify), section('Records', form, messages.element, results));

  const check = async () => {
    const chainMessages = messageArea();
    replace(chain, h('p', {}, 'Verifying…'));
    const verified = await attempt(chainMessages, () => api('GET', '/v1/audit:verify'));
    if (!verified) {
      replace(chain, h('p', { class: 'chain-broken' }, 'The chain does not verify: '), chainMessages.element);
      return;
    }
    replace(
      chain,
      h('p', { class: 'chain-ok', id: 'chain-status' }, `✓ The chain verifies: ${verified.records} records (seq ${verified.first_seq}–${verified.last_seq}), head ${String(verified.head).slice(0, 16)}…`),
      verified.checkpoint ? h('p', {}, `Pruned up to seq ${verified.checkpoint.seq} at `, time(verified.checkpoint.pruned_at), '; the chain continues from its checkpoint.') : null,
    );
  };
  verify.addEventListener('click', check);

  let after = null;
  const load = async (more) => {
    messages.clear();
    const params = formValues(form);
    for (const name of ['since', 'until']) if (params[name]) params[name] = new Date(params[name]).toISOString();
    if (more && after !== null) params.after = after;
    const page = await attempt(messages, () => get('/v1/audit', params));
    if (!page) return;
    const records = page.records || [];
    after = page.next ?? null;
    const list = table(
      [
        ['Seq', (record) => record.seq],
        ['When', (record) => time(record.at)],
        ['Principal', (record) => `${record.subject}${record.org ? ` (${record.org})` : ''}`],
        ['Method', (record) => record.method],
        ['Action', (record) => record.action],
        ['Resource', (record) => record.resource],
        ['Decision', (record) => h('span', { class: `decision decision-${record.decision}` }, record.decision)],
        ['Policies', (record) => (record.determining || []).join(', ')],
        ['Details', (record) => detailsOf(record)],
      ],
      records,
    );
    list.classList.add('audit-list');
    replace(results, h('p', {}, `${records.length} records`), list, after !== null && records.length ? h('button', { type: 'button', onclick: () => load(true) }, 'Next page') : null);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load(false);
  });
  await Promise.all([check(), load(false)]);
}

/** The record's other fields (reason, change details), as short text. */
function detailsOf(record) {
  const skip = new Set(['seq', 'at', 'subject', 'org', 'method', 'action', 'resource', 'decision', 'determining', 'prev_hash', 'hash', 'request_id']);
  const rest = Object.entries(record).filter(([name, value]) => !skip.has(name) && value !== null && value !== undefined && value !== '');
  return rest.map(([name, value]) => `${name}: ${typeof value === 'object' ? JSON.stringify(value) : value}`).join('; ');
}
