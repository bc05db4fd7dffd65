// Plans: the caller's plans (newest first, filtered by status), making a
// plan from a goal, and one plan's steps with its rationale, the graph it
// runs, executing it (optionally waiting for review) and the review's
// approve and reject buttons.

import { api, get } from '../api.js';
import { attempt, field, formValues, h, json, messageArea, replace, routeHref, section, select, table, time } from '../ui.js';

const PLAN_STATUSES = ['proposed', 'awaiting_review', 'rejected', 'executed'];

export async function render(main, route) {
  if (route.rest.length && route.rest[0]) return renderPlan(main, route.rest[0]);
  return renderList(main);
}

async function renderList(main) {
  const messages = messageArea();
  const results = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter plans' },
    field('Status', select('status', [['', 'any'], ...PLAN_STATUSES])),
    h('button', { type: 'submit' }, 'Filter'),
  );
  replace(main, h('h1', {}, 'Plans'), section('Make a plan', makeForm()), section('Plans', form, messages.element, results));

  let pageToken = null;
  const load = async (more) => {
    messages.clear();
    const params = formValues(form);
    if (more && pageToken) params.page_token = pageToken;
    const listing = await attempt(messages, () => get('/v1/plans', params));
    if (!listing) return;
    pageToken = listing.next_page_token || null;
    const list = table(
      [
        ['Plan', (plan) => h('a', { href: routeHref('plans', plan.plan_id) }, plan.plan_id)],
        ['Goal', (plan) => plan.document?.goal || ''],
        ['Status', (plan) => h('span', { class: `status status-${plan.status}` }, plan.status)],
        ['Steps', (plan) => (plan.document?.steps || []).length],
        ['Version', (plan) => plan.version],
        ['Stored', (plan) => time(plan.stored_at)],
      ],
      listing.plans || [],
    );
    list.classList.add('plan-list');
    replace(results, list, pageToken ? h('button', { type: 'button', onclick: () => load(true) }, 'Next page') : null);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load(false);
  });
  await load(false);
}

function makeForm() {
  const messages = messageArea();
  const form = h(
    'form',
    { class: 'make-plan', 'aria-label': 'Make a plan' },
    field('Goal', h('input', { type: 'text', name: 'goal', autocomplete: 'off', required: true })),
    field('Candidates with tag', h('input', { type: 'text', name: 'tag', autocomplete: 'off' }), 'Only agents with this tag are considered (empty: every agent you may call).'),
    field('Graph inputs', h('input', { type: 'text', name: 'inputs', autocomplete: 'off', placeholder: 'source_code' }), 'Comma-separated names the run input carries.'),
    h('button', { type: 'submit' }, 'Make plan'),
    messages.element,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const request = { goal: values.goal };
    if (values.tag) request.filter = { tag: values.tag };
    const inputs = values.inputs.split(',').map((name) => name.trim()).filter(Boolean);
    if (inputs.length) request.inputs = inputs;
    const plan = await attempt(messages, () => api('POST', '/v1/plans', request));
    if (plan) location.hash = routeHref('plans', plan.plan_id);
  });
  return form;
}

/** One plan; `outcome` (a node) says what the last decision did. */
async function renderPlan(main, planId, outcome) {
  const messages = messageArea();
  replace(main, h('p', { class: 'back' }, h('a', { href: '#/plans' }, '← All plans')), h('h1', {}, `Plan ${planId}`), messages.element);
  const plan = await attempt(messages, () => api('GET', `/v1/plans/${encodeURIComponent(planId)}`));
  if (!plan) return;
  if (outcome) messages.show(outcome);
  const planDocument = plan.document || {};
  main.append(
    h('p', { class: 'goal' }, planDocument.goal || ''),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', {}, h('span', { id: 'plan-status', class: `status status-${plan.status}` }, plan.status)),
      h('dt', {}, 'Version'), h('dd', {}, plan.version),
      h('dt', {}, 'Planner'), h('dd', {}, plan.planner),
      h('dt', {}, 'Stored'), h('dd', {}, time(plan.stored_at)),
      plan.run_id ? [h('dt', {}, 'Run'), h('dd', {}, h('a', { href: routeHref('runs', plan.run_id), id: 'plan-run' }, plan.run_id))] : null,
    ),
  );
  const steps = table(
    [
      ['Step', (step) => step.id],
      ['Agent', (step) => step.agent],
      ['Task', (step) => step.task],
      ['Inputs', (step) => (step.inputs || []).join(', ')],
      ['After', (step) => (step.after || []).join(', ')],
    ],
    planDocument.steps || [],
  );
  steps.classList.add('plan-steps');
  main.append(
    section('Steps', steps),
    actions(plan, (note) => renderPlan(main, planId, note)),
    section(
      'Why',
      (planDocument.rationale || []).length ? h('ul', {}, planDocument.rationale.map((line) => h('li', {}, line))) : h('p', {}, 'No rationale given.'),
      (planDocument.candidates || []).length
        ? table(
            [
              ['Candidate', (candidate) => candidate.agent],
              ['Chosen', (candidate) => (candidate.selected ? 'yes' : 'no')],
              ['Why', (candidate) => candidate.reason || ''],
            ],
            planDocument.candidates,
          )
        : null,
    ),
    h('details', {}, h('summary', {}, 'The graph it runs (YAML)'), h('pre', { class: 'json', tabindex: 0 }, plan.graph_yaml || '')),
  );
}

/** What may be done with the plan now: execute it, or decide its review. */
function actions(plan, reload) {
  const messages = messageArea();
  const path = (verb) => `/v1/plans/${encodeURIComponent(plan.plan_id)}:${verb}`;
  // Every run a plan starts here is asynchronous: the answer is the run's
  // id at once, and its page follows it live.
  const said = (answer, note) =>
    h('p', { class: 'ok', role: 'status' }, note, answer?.run_id ? [' ', h('a', { href: routeHref('runs', answer.run_id) }, `Run ${answer.run_id}`)] : null);
  if (plan.status === 'proposed' || plan.status === 'executed') {
    const input = h('textarea', { name: 'input', rows: 3, spellcheck: 'false' }, '{}');
    const review = h('input', { type: 'checkbox', name: 'review' });
    const form = h(
      'form',
      { class: 'execute-plan', 'aria-label': 'Execute the plan' },
      field('Run input (JSON)', input),
      h('div', { class: 'checks' }, field('Wait for a review before it runs', review)),
      h('button', { type: 'submit' }, 'Execute'),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      let value;
      try {
        value = JSON.parse(input.value || '{}');
      } catch (error) {
        messages.show(h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'The input is not JSON'), h('p', {}, String(error.message))));
        return;
      }
      const answer = await attempt(messages, () => api('POST', path('execute'), { mode: 'async', input: value, review: review.checked }));
      if (!answer) return;
      await reload(said(answer, answer.status === 'awaiting_review' ? 'Waiting for a review.' : 'Executing:'));
    });
    return section('Execute', form, messages.element);
  }
  if (plan.status === 'awaiting_review') {
    const comment = h('input', { type: 'text', name: 'comment', autocomplete: 'off' });
    const decide = async (verb, note) => {
      const body = comment.value.trim() ? { comment: comment.value.trim() } : {};
      const answer = await attempt(messages, () => api('POST', path(verb), body));
      if (answer) await reload(said(answer, note));
    };
    return section(
      'Review',
      h('p', {}, 'This plan waits for a person: approve it to run the steps above, or reject it (it never runs).'),
      h(
        'form',
        { class: 'inline review', 'aria-label': 'Review the plan', onsubmit: (event) => event.preventDefault() },
        field('Comment', comment),
        h('button', { type: 'button', class: 'approve', onclick: () => decide('approve', 'Approved: the plan runs.') }, 'Approve plan'),
        h('button', { type: 'button', class: 'reject', onclick: () => decide('reject', 'Rejected: the plan never runs.') }, 'Reject plan'),
      ),
      messages.element,
    );
  }
  return h('div');
}
