// Drives the web console in headless Chromium against a real `convergio
// serve` (started by cli/tests/console.rs, which passes what it prepared in
// CONSOLE_SCENARIO). Each step prints one JSON line; the last line is the
// summary {"ok", "timings", "axe"}. Exits non-zero on the first failure.
// Screenshots of every page go to CONSOLE_ARTIFACTS (not committed).
//
// Needs scripts/browser-env.sh: Debian's chromium and the npm packages of
// package-lock.json under CONVERGIO_BROWSER_ENV.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';

const environment = process.env.CONVERGIO_BROWSER_ENV;
const require = createRequire(join(environment, 'package.json'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const base = process.env.CONSOLE_BASE;
const admin = process.env.CONSOLE_ADMIN_TOKEN;
const artifacts = process.env.CONSOLE_ARTIFACTS;
const scenario = JSON.parse(process.env.CONSOLE_SCENARIO || '{}');
mkdirSync(artifacts, { recursive: true });
rmSync(join(artifacts, 'failure.png'), { force: true });

const timings = {};
const axeReport = {};
const violationsFound = [];
const cspViolations = [];
const pageErrors = [];

function say(step, extra = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...extra })}\n`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});

let page;

async function axe(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const outcome = await axe.run(document, { resultTypes: ['violations'] });
    return outcome.violations.map((violation) => ({ id: violation.id, impact: violation.impact, nodes: violation.nodes.length, help: violation.help, target: violation.nodes[0]?.target }));
  });
  axeReport[name] = result.map((violation) => `${violation.id}:${violation.impact}`);
  const bad = result.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
  for (const violation of bad) violationsFound.push({ page: name, ...violation });
}

async function shot(name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

async function visit(name) {
  await shot(name);
  await axe(name);
  say(`page ${name}`, { axe: axeReport[name] });
}

async function signIn(token, kind) {
  // A fresh start: no credential kept, the sign-in form loaded anew.
  await page.goto(`${base}/console/#/sign-in`);
  await page.evaluate(() => sessionStorage.clear());
  await page.reload();
  await page.getByLabel('Kind').selectOption(kind);
  await page.getByLabel('Credential').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function run() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  // The machine may be busy (a parallel test suite): generous waits, which
  // end as soon as the awaited state shows.
  page.setDefaultTimeout(90000);
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' && /Content Security Policy/i.test(text)) cspViolations.push(text);
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));

  // The page itself carries the strict policy.
  const answer = await page.goto(`${base}/console/`);
  const policy = answer.headers()['content-security-policy'] || '';
  check(policy.includes("default-src 'self'") && policy.includes("frame-ancestors 'none'") && !policy.includes('unsafe-inline'), `weak CSP: ${policy}`);
  await page.getByRole('heading', { name: /Sign in/ }).waitFor();
  await visit('sign-in');

  // A wrong credential: the API's own problem message, and no way in.
  await signIn('not-a-real-token', 'jwt');
  await page.locator('.problem').waitFor();
  const refusedSignIn = await page.locator('.problem').innerText();
  check(/401|unauthenticated/i.test(refusedSignIn), `sign-in refusal: ${refusedSignIn}`);
  check((await page.evaluate(() => sessionStorage.length)) === 0, 'a refused credential was kept');
  say('wrong credential refused', { problem: refusedSignIn });

  // Sign in with the admin token; it is kept in session storage only.
  await signIn(admin, 'admin');
  await page.locator('table.agent-list tbody tr').first().waitFor();
  check(!page.url().includes(admin), 'the credential is in the URL');
  check((await context.cookies()).length === 0, 'the console set a cookie');
  await visit('agents');

  // Search by free text, tag, role and trust, then by skill.
  await page.getByLabel('Free text').fill('security');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('table.agent-list tbody tr', { hasText: 'security_expert' }).waitFor();
  check((await page.locator('table.agent-list tbody tr').count()) >= 1, 'free-text search found nothing');
  say('searched by free text');
  await page.getByLabel('Free text').fill('');
  // Tag, role and minimum trust narrow the list; every row shown matches.
  const rowsAll = (text) => page.waitForFunction((wanted) => {
    const rows = [...document.querySelectorAll('table.agent-list tbody tr')];
    return rows.length > 0 && rows.every((row) => row.innerText.includes(wanted));
  }, text);
  await page.getByLabel('Skill').fill('');
  await page.getByLabel('Tag').fill('diagnostics');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('table.agent-list tbody tr', { hasText: 'echo' }).first().waitFor();
  say('searched by tag');
  await page.getByLabel('Tag').fill('');
  await page.getByLabel('Role').selectOption('critic');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('table.agent-list tbody tr', { hasText: 'security_expert' }).first().waitFor();
  await rowsAll('critic');
  say('searched by role');
  await page.getByLabel('Minimum trust').selectOption('internal');
  await page.getByRole('button', { name: 'Search' }).click();
  await rowsAll('internal');
  say('searched by role and minimum trust');
  await page.getByLabel('Role').selectOption('');
  await page.getByLabel('Minimum trust').selectOption('');
  // Input mode, output mode and organisation: exactly the agents that match.
  const searchFor = async (label, value, names) => {
    await page.getByLabel(label, { exact: true }).fill(value);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForFunction((wanted) => {
      const count = document.querySelector('.results .count')?.textContent || '';
      const rows = [...document.querySelectorAll('table.agent-list tbody tr')].map((row) => row.cells[0].textContent.trim());
      return count.startsWith(`${wanted.length} agents`) && rows.length === wanted.length && wanted.every((name) => rows.includes(name));
    }, names);
    await page.getByLabel(label, { exact: true }).fill('');
  };
  await searchFor('Input mode', 'application/pdf', ['pdf-reader']);
  say('searched by input mode');
  await searchFor('Output mode', 'text/csv', ['pdf-reader']);
  say('searched by output mode');
  await searchFor('Organisation', 'elsewhere.example', ['outsider']);
  say('searched by organisation');
  // Tag `external`: nothing here; asking the peers too finds the partner's agent.
  await searchFor('Tag', 'external', []);
  await page.getByLabel('Tag', { exact: true }).fill('external');
  await page.getByLabel('Federated (ask peers too)').check();
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('table.agent-list tbody tr', { hasText: 'partner-echo' }).locator('td', { hasText: 'peer partner.example' }).waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('table.agent-list tbody tr')].every((row) => row.textContent.includes('partner.example')));
  const federationNote = await page.locator('.federation-note').innerText();
  check(federationNote.includes('partner.example'), `federated answer: ${federationNote}`);
  await visit('agents-federated');
  say('searched federated', { note: federationNote });
  await page.getByLabel('Federated (ask peers too)').uncheck();
  await page.getByLabel('Tag', { exact: true }).fill('');
  await page.getByLabel('Skill').fill('argue-for');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('table.agent-list tbody tr', { hasText: 'advocate' }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('table.agent-list tbody tr').length === 1);
  say('searched by skill');

  // Open a card; set its trust with a reason and see it in the history.
  await page.getByRole('link', { name: 'advocate' }).click();
  await page.getByRole('heading', { name: 'Skills' }).waitFor();
  await page.locator('table', { hasText: 'argue-for' }).first().waitFor();
  await page.getByRole('heading', { name: /Interfaces/ }).waitFor();
  await page.locator('section', { hasText: 'Interfaces' }).locator('td', { hasText: '/agents/advocate' }).first().waitFor();
  await visit('agent-card');
  const reason = `console test: reviewed the advocate at ${Date.now()}`;
  await page.getByLabel('New trust level').selectOption('trusted');
  await page.getByLabel('Reason (required)').fill(reason);
  await page.getByRole('button', { name: 'Set trust' }).click();
  await page.locator('table.trust-history tbody tr', { hasText: reason }).waitFor();
  check((await page.locator('#agent-trust').innerText()) === 'trusted', 'trust not shown as changed');
  say('trust set with a reason');
  await page.getByRole('form', { name: 'Compare versions' }).getByRole('button', { name: 'Diff' }).click();
  await page.locator('.diff .add', { hasText: '"trust": "trusted"' }).waitFor();
  say('versions compared');

  // A card signed with the organisation's key: its signature verifies.
  await page.goto(`${base}/console/#/agents/${encodeURIComponent(scenario.signed_agent)}`);
  await page.locator('section', { hasText: 'Signatures' }).locator('td', { hasText: 'yes, with a key of' }).first().waitFor();
  await visit('agent-signed');
  say('signed card shown as verifying');

  // The audit page shows the change, and the chain verifies.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.locator('#chain-status').waitFor();
  check((await page.locator('#chain-status').innerText()).includes('The chain verifies'), 'the audit chain is not shown verifying');
  await page.getByLabel('Action').fill('set_trust');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('table.audit-list tbody tr', { hasText: 'advocate' }).first().waitFor();
  await visit('audit');
  say('trust change audited');

  // Policies: apply a change, see the diff, roll it back, dry-run check.
  await page.getByRole('link', { name: 'Policies' }).click();
  await page.locator('#active-version').waitFor();
  const before = await page.locator('#active-version').innerText();
  await page.getByRole('heading', { name: 'Apply a new set' }).waitFor();
  const policies = page.getByLabel('Cedar policies');
  const text = await policies.inputValue();
  check(text.includes('permit'), 'the active set was not loaded');
  const marker = `console test: a harmless change at ${Date.now()}`;
  await policies.fill(`${text}\n// ${marker}\n`);
  await page.locator('form.apply-policy').getByLabel('Reason (required)').fill('console test: apply');
  await page.locator('form.apply-policy').getByRole('button', { name: 'Apply' }).click();
  await page.waitForFunction((old) => document.querySelector('#active-version')?.textContent !== old, before);
  const applied = await page.locator('#active-version').innerText();
  await page.getByRole('form', { name: 'Compare policy versions' }).getByRole('button', { name: 'Diff' }).click();
  await page.locator('.diff .add', { hasText: marker }).waitFor();
  say('policy applied', { before, applied });
  await page.locator('form.rollback').getByLabel('Version').selectOption(before.replace(/\D+/g, ''));
  await page.locator('form.rollback').getByLabel('Reason (required)').fill('console test: roll back');
  await page.locator('form.rollback').getByRole('button', { name: 'Roll back' }).click();
  await page.waitForFunction((old) => document.querySelector('#active-version')?.textContent !== old, applied);
  const rolledBack = await page.locator('#active-version').innerText();
  check(!(await page.getByLabel('Cedar policies').inputValue()).includes(marker), 'the rollback did not restore the text');
  say('policy rolled back', { rolledBack });
  await page.getByRole('button', { name: 'Check' }).click();
  await page.locator('#check-decision').waitFor();
  const decision = await page.locator('#check-decision').innerText();
  check(/^Decision: (allow|deny) \(version /.test(decision), `the dry-run shows no decision: ${decision}`);
  check(await page.getByText(/^Determined by: /).isVisible(), 'the dry-run names no determining policy');
  say('dry-run checked', { decision });
  await visit('policies');

  // Runs: start code_review_pipeline and watch all six nodes turn green.
  await page.getByRole('link', { name: 'Runs', exact: true }).click();
  await page.getByRole('button', { name: 'Start run' }).waitFor();
  await page.getByLabel('Stored graph').selectOption('code_review_pipeline');
  await page.getByLabel('Input (JSON)').fill(JSON.stringify({ source_code: 'import os\n\ndef run(cmd):\n    password = "hunter2"\n    os.system(cmd)\n' }));
  await page.getByRole('button', { name: 'Start run' }).click();
  await page.locator('svg g.node').first().waitFor();
  check((await page.locator('svg g.node').count()) === 6, 'the pipeline is not drawn with six nodes');
  await page.waitForFunction(() => document.querySelectorAll('svg g.node.status-succeeded').length === 6, null, { timeout: 60000 });
  await page.locator('#run-status', { hasText: 'succeeded' }).waitFor();
  await page.locator('svg g.node[data-node="reporter"]').click();
  await page.locator('.node-details', { hasText: 'Output' }).locator('pre').last().waitFor();
  await page.locator('.timeline table tbody tr').nth(5).waitFor();
  await visit('run-graph');
  say('pipeline ran, six nodes green');
  await page.getByRole('link', { name: 'All runs' }).click();
  await page.locator('table.run-list tbody tr').first().waitFor();
  await visit('runs');

  // A run waiting for a human: approve it from its page.
  await page.goto(`${base}/console/#/runs/${scenario.waiting_run}`);
  await page.locator('svg g.node.status-waiting_for_human').waitFor();
  await visit('run-waiting');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: 60000 });
  say('human approval given');
  await page.goto(`${base}/console/#/runs/${scenario.reject_run}`);
  await page.locator('svg g.node.status-waiting_for_human').waitFor();
  await page.getByLabel('Reason').fill('console test: not this time');
  await page.getByRole('button', { name: 'Reject' }).click();
  await page.locator('#run-status', { hasText: 'failed' }).waitFor({ timeout: 60000 });
  say('human rejection given');
  await page.goto(`${base}/console/#/runs/${scenario.input_run}`);
  await page.locator('svg g.node.status-waiting_for_human').waitFor();
  await page.getByLabel('Node output (JSON)').fill(JSON.stringify('given by a human'));
  await page.getByRole('button', { name: 'Give input' }).click();
  await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: 60000 });
  await page.locator('svg g.node[data-node="gate"]').click();
  await page.locator('.node-details pre', { hasText: 'given by a human' }).first().waitFor();
  say('human input given');

  // A run that failed at its held node after the checkpoint `before-hold`:
  // one button resumes it, and the new run is followed live — the held
  // node is shown running (its agent holds the call until this script
  // releases it), then succeeded.
  await page.goto(`${base}/console/#/runs/${scenario.failed_run}`);
  await page.locator('#run-status', { hasText: 'failed' }).waitFor();
  await page.locator('svg g.node.status-failed[data-node="hold"]').waitFor();
  await page.getByRole('button', { name: 'Resume from before-hold' }).click();
  await page.waitForFunction((old) => /^#\/runs\/[0-9a-f-]+$/.test(location.hash) && !location.hash.includes(old), scenario.failed_run);
  const resumedRun = page.url().split('/').pop();
  await page.locator('svg g.node.status-running[data-node="hold"]').waitFor();
  check((await page.locator('#run-status').innerText()) === 'running', 'the resumed run is not shown running');
  // Every class the held node takes from now on, as it happens.
  await page.evaluate(() => {
    const node = document.querySelector('svg g.node[data-node="hold"]');
    window.holdClasses = [node.getAttribute('class')];
    new MutationObserver(() => window.holdClasses.push(node.getAttribute('class'))).observe(node, { attributes: true, attributeFilter: ['class'] });
  });
  await visit('run-live');
  const released = await fetch(scenario.held_url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'A2A-Version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: randomUUID(), role: 'ROLE_USER', parts: [{ text: scenario.release }] } } }),
  });
  check(released.ok, `the release was refused: ${released.status}`);
  await page.locator('svg g.node.status-succeeded[data-node="hold"]').waitFor();
  await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: 60000 });
  await page.waitForFunction(() => document.querySelectorAll('svg g.node.status-succeeded').length === 3);
  const holdClasses = await page.evaluate(() => window.holdClasses);
  check(holdClasses[0].includes('status-running') && holdClasses.at(-1).includes('status-succeeded'), `the held node's colours: ${holdClasses.join(' → ')}`);
  say('resumed from a checkpoint; the held node was running, then succeeded', { run: resumedRun, classes: holdClasses });

  // The runs list, filtered by status.
  await page.getByRole('link', { name: 'Runs', exact: true }).click();
  await page.getByLabel('Status').selectOption('failed');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.run-list tbody tr')];
    return rows.length >= 1 && rows.every((row) => row.textContent.includes('failed'));
  });
  say('runs filtered by status');

  // Peers: the organisation, its key state and the last fetch's error.
  await page.getByRole('link', { name: 'Peers' }).click();
  await page.getByRole('heading', { name: scenario.peer }).waitFor();
  const peerSection = page.locator('section', { has: page.getByRole('heading', { name: scenario.peer }) });
  await peerSection.locator('dd .error', { hasText: 'fetching the jwks' }).waitFor();
  await peerSection.getByRole('button', { name: 'Sync catalogue' }).click();
  await page.locator('.problem, .peer-output pre').first().waitFor();
  await visit('peers');
  const mirror = page.locator('section', { has: page.getByRole('heading', { name: scenario.pending_peer }) });
  await mirror.getByRole('button', { name: 'Approve 1 pending keys' }).click();
  await page.locator('section', { has: page.getByRole('heading', { name: scenario.pending_peer }) }).locator('td', { hasText: 'approved' }).first().waitFor();
  say('peers shown, a pending key approved');

  // Plans: make one from a goal, execute it after a review, approve it and
  // see its run finish; make another and reject it.
  const makePlan = async () => {
    await page.getByRole('link', { name: 'Plans' }).click();
    await page.getByLabel('Goal').fill('review this code for security and style problems and write a report');
    await page.getByLabel('Candidates with tag').fill('code-review');
    await page.getByLabel('Graph inputs').fill('source_code');
    await page.getByRole('button', { name: 'Make plan' }).click();
    await page.locator('table.plan-steps tbody tr').first().waitFor();
    await page.locator('#plan-status', { hasText: 'proposed' }).waitFor();
    await page.getByLabel('Run input (JSON)').fill(JSON.stringify({ source_code: 'import os\n\ndef run(cmd):\n    password = "hunter2"\n    os.system(cmd)\n' }));
    await page.getByLabel('Wait for a review before it runs').check();
    await page.getByRole('button', { name: 'Execute' }).click();
    await page.locator('#plan-status', { hasText: 'awaiting_review' }).waitFor();
  };
  await makePlan();
  const steps = await page.locator('table.plan-steps tbody tr').count();
  check(steps >= 2, `the plan has ${steps} steps`);
  await visit('plan-review');
  await page.getByLabel('Comment').fill('console test: looks right');
  await page.getByRole('button', { name: 'Approve plan' }).click();
  await page.locator('#plan-status', { hasText: 'executed' }).waitFor();
  await page.locator('#plan-run').click();
  await page.locator('#run-status', { hasText: 'succeeded' }).waitFor({ timeout: 60000 });
  say('plan approved and run', { steps });
  await makePlan();
  await page.getByLabel('Comment').fill('console test: not now');
  await page.getByRole('button', { name: 'Reject plan' }).click();
  await page.locator('#plan-status', { hasText: 'rejected' }).waitFor();
  say('plan rejected');
  await page.getByRole('link', { name: 'All plans' }).click();
  await page.waitForFunction(() => document.querySelectorAll('table.plan-list tbody tr').length === 2);
  await page.getByLabel('Status').selectOption('rejected');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.plan-list tbody tr')];
    return rows.length === 1 && rows[0].textContent.includes('rejected');
  });
  await visit('plans');
  say('plans listed and filtered');

  // Memory: the namespaces, one namespace's items, a similarity search.
  await page.getByRole('link', { name: 'Memory' }).click();
  await page.locator('table.namespace-list tbody tr', { hasText: 'profiles' }).waitFor();
  await page.locator('table.namespace-list tbody tr', { hasText: 'vector' }).waitFor();
  await visit('memory');
  await page.getByRole('link', { name: 'profiles', exact: true }).click();
  await page.locator('table.item-list tbody tr', { hasText: 'Ann' }).waitFor();
  await page.getByRole('link', { name: 'All namespaces' }).click();
  await page.getByRole('link', { name: 'kb', exact: true }).click();
  await page.locator('table.item-list tbody tr', { hasText: 'pets' }).waitFor();
  await page.locator('table.item-list tbody tr', { hasText: 'tax' }).waitFor();
  await page.getByLabel('Query').fill('where does the kitten sleep');
  await page.getByLabel('Top k').fill('1');
  await page.getByRole('button', { name: 'Search memory' }).click();
  await page.locator('table.hit-list tbody tr', { hasText: 'kitten sleeps on the sofa' }).waitFor();
  check((await page.locator('table.hit-list tbody tr').count()) === 1, 'top_k 1 showed more than one hit');
  await visit('memory-namespace');
  say('memory browsed and searched');

  // A refused action shows the API's own problem message.
  await page.getByRole('button', { name: 'Sign out' }).click();
  check((await page.evaluate(() => sessionStorage.length)) === 0, 'sign-out kept the credential');
  await signIn(scenario.limited_key, 'api-key');
  await page.locator('table.agent-list tbody tr').first().waitFor();
  await page.goto(`${base}/console/#/agents/${encodeURIComponent('convergio://agents/echo')}`);
  await page.getByLabel('New trust level').selectOption('trusted');
  await page.getByLabel('Reason (required)').fill('not allowed');
  await page.getByRole('button', { name: 'Set trust' }).click();
  await page.locator('form.trust-form .problem').waitFor();
  const refused = await page.locator('form.trust-form .problem').innerText();
  check(/403|forbidden/i.test(refused) && refused.includes('may not change'), `refusal: ${refused}`);
  await visit('refused');
  say('refused action shows its problem', { problem: refused });
  await page.getByRole('link', { name: 'Policies' }).click();
  // The policies page's own refusal, not the card page's left behind.
  await page.locator('.problem', { hasText: 'administer_policy' }).waitFor();
  say('policies refused to a plain key', { problem: await page.locator('.problem').innerText() });

  // A bearer JWT of the configured issuer: a member of this organisation
  // with `memory:read`. It sees this organisation's agents (not another
  // organisation's), may read memory, and is refused the policies.
  await signIn(scenario.jwt, 'jwt');
  await page.locator('table.agent-list tbody tr').first().waitFor();
  check((await page.locator('#who').innerText()).includes('a JWT'), 'not shown as signed in with a JWT');
  await page.getByLabel('Organisation').fill('elsewhere.example');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('.results .count', { hasText: /^0 agents/ }).waitFor();
  await page.getByRole('link', { name: 'Memory' }).click();
  await page.locator('table.namespace-list tbody tr', { hasText: 'kb' }).waitFor();
  await page.getByRole('link', { name: 'Policies' }).click();
  await page.locator('.problem', { hasText: 'administer_policy' }).waitFor();
  const jwtRefusal = await page.locator('.problem').innerText();
  check(/403|forbidden/i.test(jwtRefusal), `the JWT's refusal: ${jwtRefusal}`);
  await visit('jwt-refused');
  say('signed in with a JWT', { problem: jwtRefusal });

  // Scale: the agent list among 10,000 agents, a 200-node run's graph.
  await signIn(admin, 'admin');
  await page.locator('table.agent-list tbody tr').first().waitFor();
  if (scenario.many_agents) {
    const started = Date.now();
    await page.goto(`${base}/console/#/runs`);
    await page.goto(`${base}/console/#/agents`);
    await page.locator('table.agent-list tbody tr').nth(49).waitFor();
    timings.agent_list_ms = Date.now() - started;
    say('agent list among many', timings);
  }
  if (scenario.big_run) {
    await page.goto(`${base}/console/#/runs`);
    const started = Date.now();
    await page.goto(`${base}/console/#/runs/${scenario.big_run}`);
    await page.waitForFunction((count) => document.querySelectorAll('svg g.node').length >= count, scenario.big_run_nodes, { timeout: 60000 });
    timings.run_graph_ms = Date.now() - started;
    await shot('run-graph-200');
    say('big run drawn', timings);
  }
  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join(' | ')}`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
  check(violationsFound.length === 0, `serious accessibility violations: ${JSON.stringify(violationsFound)}`);
}

let ok = true;
let failure = null;
try {
  await run();
} catch (error) {
  ok = false;
  failure = String(error && error.stack ? error.stack : error);
  if (page) await page.screenshot({ path: join(artifacts, 'failure.png'), fullPage: true }).catch(() => {});
}
await browser.close();
process.stdout.write(`${JSON.stringify({ ok, failure, timings, axe: axeReport, csp: cspViolations, errors: pageErrors })}\n`);
process.exit(ok ? 0 : 1);
