// The console's shell: sign-in, navigation and the page table. Pages are
// ES modules under pages/, each exporting `render(main, route)`; routes are
// hashes (`#/agents`, `#/runs/<id>`), so the server serves one page and a
// reload keeps the place. A new page (plugins, say) is one entry in PAGES
// and one module under pages/.

import { api, credential, credentialKind, setCredential } from './api.js';
import { field, h, problemBox, replace, select } from './ui.js';

/** Every page: its route name, its title in the navigation, its module. */
export const PAGES = [
  { name: 'agents', title: 'Agents', load: () => import('./pages/agents.js') },
  { name: 'runs', title: 'Runs', load: () => import('./pages/runs.js') },
  { name: 'plans', title: 'Plans', load: () => import('./pages/plans.js') },
  { name: 'memory', title: 'Memory', load: () => import('./pages/memory.js') },
  { name: 'audit', title: 'Audit', load: () => import('./pages/audit.js') },
  { name: 'policies', title: 'Policies', load: () => import('./pages/policies.js') },
  { name: 'peers', title: 'Peers', load: () => import('./pages/peers.js') },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');

/** The current route: page name and the rest of the path, decoded. */
export function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/');
  return { name: name || 'agents', rest: rest.map(decodeURIComponent) };
}

function signInForm() {
  const token = h('input', { type: 'password', name: 'credential', autocomplete: 'off', required: true, spellcheck: 'false' });
  const kind = select('kind', [
    ['admin', 'Admin token'],
    ['api-key', 'API key (cvg_…)'],
    ['jwt', 'Bearer JWT'],
  ]);
  const messages = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in to the Convergio console'),
    h('p', {}, 'The credential is sent as Authorization: Bearer and kept in this tab only (session storage); the console shows what it allows.'),
    field('Kind', kind),
    field('Credential', token),
    h('button', { type: 'submit' }, 'Sign in'),
    messages,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = token.value.trim();
    if (!value) return;
    setCredential(value, kind.value);
    try {
      // Any authenticated read proves the credential: a listing of one agent.
      await api('GET', '/v1/agents?page_size=1');
      if (!location.hash || location.hash === '#/' || location.hash === '#/sign-in') location.hash = '#/agents';
      await route();
    } catch (error) {
      setCredential(null);
      replace(messages, problemBox(error));
    }
  });
  return form;
}

function drawNav(active) {
  replace(
    nav,
    h('ul', {}, PAGES.map((page) => h('li', {}, h('a', { href: `#/${page.name}`, 'aria-current': page.name === active ? 'page' : null }, page.title)))),
  );
  nav.hidden = false;
  who.textContent = `signed in with ${credentialKind() === 'api-key' ? 'an API key' : credentialKind() === 'jwt' ? 'a JWT' : 'the admin token'}`;
  signOut.hidden = false;
}

let generation = 0;

async function route() {
  generation += 1;
  const mine = generation;
  // Pages that stream (a run's events) stop when the page changes.
  window.dispatchEvent(new CustomEvent('console:leave'));
  if (!credential()) {
    nav.hidden = true;
    signOut.hidden = true;
    who.textContent = '';
    replace(main, signInForm());
    document.title = 'Sign in · Convergio console';
    return;
  }
  const { name, rest } = currentRoute();
  const page = PAGES.find((candidate) => candidate.name === name) || PAGES[0];
  drawNav(page.name);
  document.title = `${page.title} · Convergio console`;
  const module = await page.load();
  if (mine !== generation) return;
  const container = h('div', { class: `page page-${page.name}` });
  replace(main, container);
  try {
    await module.render(container, { rest, isCurrent: () => mine === generation });
  } catch (error) {
    container.append(problemBox(error));
  }
}

signOut.addEventListener('click', () => {
  setCredential(null);
  location.hash = '#/sign-in';
  route();
});
window.addEventListener('hashchange', route);
route();
