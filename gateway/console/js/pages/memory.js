// Memory: the caller's organisation's namespaces, one namespace's items
// (paged by key) and, for a vector namespace, a similarity search.

import { api, get } from '../api.js';
import { attempt, field, h, json, messageArea, replace, routeHref, section, table, time } from '../ui.js';

export async function render(main, route) {
  if (route.rest.length && route.rest[0]) return renderNamespace(main, route.rest[0]);
  return renderList(main);
}

async function renderList(main) {
  const messages = messageArea();
  replace(main, h('h1', {}, 'Memory'), messages.element);
  const listing = await attempt(messages, () => api('GET', '/v1/memory'));
  if (!listing) return;
  const namespaces = listing.namespaces || [];
  const list = table(
    [
      ['Namespace', (namespace) => h('a', { href: routeHref('memory', namespace.name) }, namespace.name)],
      ['Kind', (namespace) => namespace.kind],
      ['Organisation', (namespace) => namespace.org],
      ['Created', (namespace) => time(namespace.created_at)],
    ],
    namespaces,
  );
  list.classList.add('namespace-list');
  main.append(
    h('p', {}, `${namespaces.length} namespaces of ${listing.org || 'this organisation'}.`),
    namespaces.length ? list : h('p', {}, 'No memory namespaces yet.'),
  );
}

/** A value in one table cell: text as it is, anything else as short JSON. */
function preview(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

async function renderNamespace(main, name) {
  const messages = messageArea();
  replace(main, h('p', { class: 'back' }, h('a', { href: '#/memory' }, '← All namespaces')), h('h1', {}, `Namespace ${name}`), messages.element);
  const namespace = await attempt(messages, () => api('GET', `/v1/memory/${encodeURIComponent(name)}`));
  if (!namespace) return;
  main.append(
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Kind'), h('dd', { id: 'namespace-kind' }, namespace.kind),
      h('dt', {}, 'Organisation'), h('dd', {}, namespace.org),
      h('dt', {}, 'Created'), h('dd', {}, time(namespace.created_at)),
    ),
    h('details', {}, h('summary', {}, 'Its declaration'), json(namespace.spec)),
  );
  if (namespace.kind === 'vector') main.append(section('Search', searchForm(name)));
  const items = h('div', { 'aria-live': 'polite' });
  main.append(section('Items', items));
  await drawItems(items, name, null);
}

async function drawItems(target, name, after) {
  const messages = messageArea();
  const page = await attempt(messages, () => get(`/v1/memory/${encodeURIComponent(name)}/items`, { after, limit: 50 }));
  if (!page) {
    replace(target, messages.element);
    return;
  }
  const list = table(
    [
      ['Key', (item) => item.key],
      ['Version', (item) => item.version],
      ['Updated', (item) => time(item.updated_at)],
      ['Expires', (item) => (item.expires_at ? time(item.expires_at) : 'never')],
      ['Value', (item) => preview(item.value)],
    ],
    page.items || [],
  );
  list.classList.add('item-list');
  replace(
    target,
    (page.items || []).length ? list : h('p', {}, after ? 'No more items.' : 'No items.'),
    page.next_after ? h('button', { type: 'button', onclick: () => drawItems(target, name, page.next_after) }, 'Next page') : null,
  );
}

function searchForm(name) {
  const messages = messageArea();
  const results = h('div', { 'aria-live': 'polite' });
  const query = h('input', { type: 'search', name: 'query', autocomplete: 'off', required: true });
  const topK = h('input', { type: 'number', name: 'top_k', min: 1, max: 100, value: 5 });
  const form = h(
    'form',
    { class: 'filters memory-search', role: 'search', 'aria-label': 'Search the namespace' },
    field('Query', query),
    field('Top k', topK),
    h('button', { type: 'submit' }, 'Search memory'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    messages.clear();
    const answer = await attempt(messages, () => api('POST', `/v1/memory/${encodeURIComponent(name)}:search`, { query: query.value.trim(), top_k: Number(topK.value) || 5 }));
    if (!answer) return;
    const hits = table(
      [
        ['Key', (hit) => hit.key],
        ['Chunk', (hit) => hit.seq],
        ['Score', (hit) => Number(hit.score).toFixed(3)],
        ['Text', (hit) => hit.text],
        ['Metadata', (hit) => preview(hit.metadata ?? {})],
      ],
      answer.hits || [],
    );
    hits.classList.add('hit-list');
    replace(results, (answer.hits || []).length ? hits : h('p', {}, 'Nothing matched.'));
  });
  return h('div', {}, form, messages.element, results);
}
