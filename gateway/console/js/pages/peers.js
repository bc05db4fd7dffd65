// Peers: the federated organisations, their keys and approval state, the
// last key fetch and its error, and approve, refresh and sync buttons (the
// sync report, with its errors, shown as the API returns it).

import { api } from '../api.js';
import { attempt, h, json, messageArea, replace, section, table, time } from '../ui.js';

export async function render(main) {
  const messages = messageArea();
  const output = h('div', { class: 'peer-output', 'aria-live': 'polite' });
  replace(main, h('h1', {}, 'Peers'), messages.element, output);
  const listing = await attempt(messages, () => api('GET', '/v1/peers'));
  if (!listing) return;
  const peers = listing.peers || [];
  const act = async (label, path) => {
    const answer = await attempt(messages, () => api('POST', path));
    if (!answer) return;
    await render(main);
    main.querySelector('.peer-output')?.replaceChildren(h('h2', {}, label), json(answer));
  };
  if (!peers.length) {
    main.append(h('p', {}, 'No peer organisations are configured.'));
    return;
  }
  for (const peer of peers) {
    const domain = encodeURIComponent(peer.domain);
    const pending = (peer.keys || []).filter((key) => key.state === 'pending').length;
    main.append(
      section(
        peer.domain,
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'URL'), h('dd', {}, peer.url),
          h('dt', {}, 'Key set'), h('dd', {}, peer.jwks_url || 'pinned keys'),
          h('dt', {}, 'Trust'), h('dd', {}, peer.trust),
          h('dt', {}, 'Updated'), h('dd', {}, time(peer.updated_at)),
          h('dt', {}, 'Last key fetch'),
          h('dd', {}, peer.jwks_fetch_failure
            ? h('span', { class: 'error' }, `failed `, time(peer.jwks_fetch_failure.failed_at), `: ${peer.jwks_fetch_failure.error} (next try `, time(peer.jwks_fetch_failure.next_retry_at), ')')
            : 'no failure recorded'),
        ),
        table([
          ['Key id', (key) => key.kid],
          ['State', (key) => key.state],
          ['Type', (key) => `${key.jwk?.kty || ''} ${key.jwk?.crv || ''}`],
        ], peer.keys || []),
        h(
          'div',
          { class: 'buttons' },
          h('button', { type: 'button', disabled: pending === 0, onclick: () => act(`Approved keys of ${peer.domain}`, `/v1/peers/${domain}/approve`) }, `Approve ${pending} pending keys`),
          h('button', { type: 'button', onclick: () => act(`Keys of ${peer.domain} fetched again`, `/v1/peers/${domain}/refresh`) }, 'Fetch keys again'),
          h('button', { type: 'button', onclick: () => act(`Sync of ${peer.domain}`, `/v1/peers/${domain}:sync`) }, 'Sync catalogue'),
        ),
      ),
    );
  }
}
