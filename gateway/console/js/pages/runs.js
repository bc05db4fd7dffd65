// Runs: the caller's runs with filters, starting a run of a stored graph,
// and one run drawn as its graph (layered layout) whose nodes are coloured
// live from the run's SSE events, a timeline of node durations with tokens
// and cost, node inputs and outputs on click, the human decisions and
// resume-from-checkpoint as buttons.

import { api, follow, get } from '../api.js';
import { layeredLayout } from '../layout.js';
import { attempt, field, formValues, h, json, messageArea, replace, routeHref, section, select, svg, table, time } from '../ui.js';

const RUN_STATUSES = ['running', 'succeeded', 'failed', 'timed_out', 'iteration_limit', 'waiting_for_human', 'cancelled', 'replans_exhausted', 'replan_failed'];

export async function render(main, route) {
  if (route.rest.length && route.rest[0]) return renderRun(main, route.rest[0], route);
  return renderList(main);
}

async function renderList(main) {
  const messages = messageArea();
  const startArea = h('div');
  const results = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    field('Status', select('status', [['', 'any'], ...RUN_STATUSES])),
    field('Graph', h('input', { type: 'text', name: 'graph', autocomplete: 'off' })),
    field('Since', h('input', { type: 'datetime-local', name: 'since' })),
    field('Until', h('input', { type: 'datetime-local', name: 'until' })),
    h('button', { type: 'submit' }, 'Filter'),
  );
  replace(main, h('h1', {}, 'Runs'), section('Start a run', startArea), section('Runs', form, messages.element, results));
  startForm(startArea);

  let pageToken = null;
  const load = async (more) => {
    messages.clear();
    const params = formValues(form);
    for (const name of ['since', 'until']) if (params[name]) params[name] = new Date(params[name]).toISOString();
    if (more && pageToken) params.page_token = pageToken;
    const listing = await attempt(messages, () => get('/v1/runs', params));
    if (!listing) return;
    pageToken = listing.next_page_token || null;
    const list = table(
      [
        ['Run', (run) => h('a', { href: routeHref('runs', run.run_id) }, run.run_id)],
        ['Graph', (run) => run.graph_id],
        ['Status', (run) => h('span', { class: `status status-${run.status}` }, run.status)],
        ['Started', (run) => time(run.started_at)],
        ['Finished', (run) => time(run.finished_at)],
      ],
      listing.runs || [],
    );
    list.classList.add('run-list');
    replace(results, list, pageToken ? h('button', { type: 'button', onclick: () => load(true) }, 'Next page') : null);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load(false);
  });
  await load(false);
}

async function startForm(target) {
  const messages = messageArea();
  const graphs = await attempt(messages, () => api('GET', '/v1/graphs'));
  const names = (graphs?.graphs || []).map((graph) => [graph.name, `${graph.name} (v${graph.version}, ${graph.nodes} nodes)`]);
  const graph = select('graph', names);
  const input = h('textarea', { name: 'input', rows: 4, spellcheck: 'false' }, '{}');
  const form = h(
    'form',
    { class: 'start-run', 'aria-label': 'Start a run' },
    field('Stored graph', graph),
    field('Input (JSON)', input),
    h('button', { type: 'submit', disabled: names.length === 0 }, 'Start run'),
    messages.element,
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
    const accepted = await attempt(messages, () => api('POST', '/v1/runs', { graph: graph.value, mode: 'async', input: value }));
    if (accepted) location.hash = routeHref('runs', accepted.run_id);
  });
  replace(target, names.length ? form : h('div', {}, h('p', {}, 'No stored graphs this credential may read.'), messages.element));
}

/** A spec's edges as [from, to] pairs (from `edges`, else from `inputs`). */
function specEdges(spec) {
  const pairs = [];
  const many = (value) => (Array.isArray(value) ? value : [value]);
  for (const edge of spec.edges || []) for (const from of many(edge.from)) for (const to of many(edge.to)) pairs.push([from, to]);
  if (!pairs.length) {
    const ids = new Set((spec.nodes || []).map((node) => node.id));
    for (const node of spec.nodes || []) {
      for (const reference of node.inputs || []) {
        const source = String(reference).split('.')[0];
        if (ids.has(source) && source !== node.id) pairs.push([source, node.id]);
      }
    }
  }
  return pairs;
}

async function renderRun(main, runId, route) {
  const messages = messageArea();
  replace(main, h('p', { class: 'back' }, h('a', { href: '#/runs' }, '← All runs')), h('h1', {}, `Run ${runId}`), messages.element);
  const summary = await attempt(messages, () => api('GET', `/v1/runs/${encodeURIComponent(runId)}`));
  if (!summary) return;
  const statusLine = h('p', { class: 'run-status', 'aria-live': 'polite' });
  const actions = h('div', { class: 'run-actions' });
  const graphArea = h('div', { class: 'graph-area' });
  const details = h('div', { class: 'node-details', 'aria-live': 'polite' }, h('p', {}, 'Select a node to see its inputs and output.'));
  const timeline = h('div', { class: 'timeline' });
  const checkpointsArea = h('div');
  main.append(statusLine, actions, section('Graph', graphArea, details), section('Timeline', timeline), section('Checkpoints', checkpointsArea));

  const state = { summary, nodes: new Map(), edges: [], outputs: new Map(), errors: new Map(), input: null, spec: null };
  const graphDocument = await attempt(messageArea(), () => api('GET', `/v1/graphs/${encodeURIComponent(summary.graph_id)}`));
  if (graphDocument?.spec) {
    state.spec = graphDocument.spec;
    for (const node of graphDocument.spec.nodes || []) state.nodes.set(node.id, { spec: node, status: 'pending' });
    state.edges = specEdges(graphDocument.spec);
  }
  // What already happened (a finished run, or the part before a continuation).
  const outcome = await attempt(messageArea(), () => api('GET', `/v1/runs/${encodeURIComponent(runId)}/result`));
  if (outcome?.trace) {
    for (const node of outcome.trace.nodes || []) {
      const known = state.nodes.get(node.node_id) || { spec: { id: node.node_id, agent: node.agent } };
      known.status = node.status === 'success' ? 'succeeded' : node.status;
      state.nodes.set(node.node_id, known);
    }
    // A paused run waits at the node whose failure paused it: its last failed one.
    if (outcome.status === 'waiting_for_human') {
      const waiting = [...(outcome.trace.nodes || [])].reverse().find((node) => node.status === 'failed');
      if (waiting) {
        state.nodes.get(waiting.node_id).status = 'waiting_for_human';
        state.humanNode = waiting.node_id;
      }
    }
    state.summary = { ...state.summary, error: outcome.error };
    for (const node of outcome.trace.nodes || []) if (node.status === 'failed' && outcome.error) state.errors.set(node.node_id, outcome.error);
  }

  const paint = () => {
    replace(statusLine, 'Status: ', h('span', { class: `status status-${state.summary.status}`, id: 'run-status' }, state.summary.status), state.summary.error ? ` — ${state.summary.error}` : '');
    // The buttons are drawn again only when the status changes, so a
    // reason or output being typed is never thrown away.
    if (state.actionsFor !== state.summary.status) {
      state.actionsFor = state.summary.status;
      drawActions(actions, runId, state, () => {
        paint();
        followEvents();
      });
    }
  };
  const drawn = drawGraph(graphArea, state, (id) => showNode(details, state, id));
  paint();

  const recolour = (id) => {
    const node = drawn.get(id);
    const known = state.nodes.get(id);
    if (node && known) {
      node.setAttribute('class', `node status-${known.status}`);
      const line = node.querySelector('text.agent');
      if (line) line.textContent = subtitle(known);
    }
  };
  const ensure = (id, agent) => {
    if (!state.nodes.has(id)) {
      state.nodes.set(id, { spec: { id, agent }, status: 'pending' });
      // A node the graph did not name (an inline graph): draw again.
      drawn.clear();
      for (const [key, value] of drawGraph(graphArea, state, (node) => showNode(details, state, node))) drawn.set(key, value);
    }
    return state.nodes.get(id);
  };
  const onEvent = ({ data }) => {
    if (!data || typeof data !== 'object') return;
    switch (data.type) {
      case 'node_started':
        if (state.humanNode === data.node_id) state.humanNode = null;
        ensure(data.node_id, data.agent).status = 'running';
        recolour(data.node_id);
        break;
      case 'node_output':
        state.outputs.set(data.node_id, data.output);
        break;
      case 'node_error':
        state.errors.set(data.node_id, data.error);
        if (data.action === 'human') {
          ensure(data.node_id).status = 'waiting_for_human';
          state.humanNode = data.node_id;
          recolour(data.node_id);
        }
        break;
      case 'node_finished': {
        const known = ensure(data.node_id);
        // The node a human must decide on stays so until the decision.
        const paused = state.humanNode === data.node_id && data.status === 'failed';
        if (!paused) known.status = data.status === 'not_run' ? 'skipped' : data.status;
        if (data.status === 'succeeded') state.errors.delete(data.node_id);
        known.duration_ms = data.duration_ms;
        recolour(data.node_id);
        break;
      }
      case 'run_finished':
        state.summary = { ...state.summary, status: data.status, error: data.error };
        paint();
        break;
      default:
        break;
    }
  };
  let controller = null;
  const followEvents = async () => {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    window.addEventListener('console:leave', () => mine.abort(), { once: true });
    try {
      await follow(`/v1/runs/${encodeURIComponent(runId)}/events`, onEvent, mine.signal);
    } catch (error) {
      if (error.name !== 'AbortError' && state.summary.status === 'running') messages.problem(error);
    }
    if (mine.signal.aborted || !route.isCurrent()) return;
    const latest = await attempt(messageArea(), () => api('GET', `/v1/runs/${encodeURIComponent(runId)}`));
    if (latest) state.summary = { ...state.summary, ...latest };
    paint();
    const trace = await drawTimeline(timeline, runId);
    // Nodes a resumed run took over from its checkpoint have no live
    // events: their final state is the trace's.
    for (const node of trace?.nodes || []) {
      const known = state.nodes.get(node.node_id);
      if (known && (known.status === 'pending' || known.status === 'running')) {
        known.status = node.status === 'success' ? 'succeeded' : node.status;
        recolour(node.node_id);
      }
    }
    await drawCheckpoints(checkpointsArea, runId);
  };
  await drawTimeline(timeline, runId);
  await drawCheckpoints(checkpointsArea, runId);
  followEvents();
}

function drawGraph(target, state, onSelect) {
  const ids = [...state.nodes.keys()];
  const layout = layeredLayout(ids, state.edges);
  const nodes = new Map();
  const { nodeWidth: width, nodeHeight: height } = layout;
  const edges = state.edges.map(([from, to]) => {
    const a = layout.positions.get(from);
    const b = layout.positions.get(to);
    if (!a || !b) return null;
    const back = layout.backEdges.has(`${from}→${to}`);
    const x1 = a.x + width;
    const y1 = a.y + height / 2;
    const x2 = b.x;
    const y2 = b.y + height / 2;
    const bend = back ? `M${x1},${y1} C${x1 + 40},${y1 - 60} ${x2 - 40},${y2 - 60} ${x2},${y2}` : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    return svg('path', { d: bend, class: back ? 'edge back' : 'edge', 'marker-end': 'url(#arrow)' });
  });
  const boxes = ids.map((id) => {
    const position = layout.positions.get(id);
    const known = state.nodes.get(id);
    const label = id.length > 24 ? `${id.slice(0, 23)}…` : id;
    const group = svg(
      'g',
      {
        class: `node status-${known.status}`,
        transform: `translate(${position.x},${position.y})`,
        tabindex: 0,
        role: 'button',
        'data-node': id,
        onclick: () => onSelect(id),
        onkeydown: (event) => {
          if (event.key === 'Enter' || event.key === ' ') {
            event.preventDefault();
            onSelect(id);
          }
        },
      },
      svg('rect', { width, height, rx: 6 }),
      svg('text', { x: 8, y: 18 }, label),
      svg('text', { x: 8, y: 34, class: 'agent' }, subtitle(known)),
    );
    nodes.set(id, group);
    return group;
  });
  const picture = svg(
    'svg',
    { width: layout.width, height: layout.height, viewBox: `0 0 ${layout.width} ${layout.height}`, role: 'group', 'aria-label': 'Run graph' },
    svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))),
    edges.filter(Boolean),
    boxes,
  );
  const legend = h('ul', { class: 'legend', 'aria-label': 'Colours' }, ['pending', 'running', 'succeeded', 'failed', 'skipped', 'waiting_for_human'].map((status) => h('li', { class: `status-${status}` }, status.replace(/_/g, ' '))));
  replace(target, legend, h('div', { class: 'graph-scroll', tabindex: 0, role: 'region', 'aria-label': 'Run graph, scrollable' }, picture));
  return nodes;
}

/** A node's second line: its agent and status (the status in words, not only colour). */
function subtitle(known) {
  const agent = known.spec?.agent || known.spec?.kind || '';
  const text = `${agent} · ${known.status.replace(/_/g, ' ')}`;
  return text.length > 30 ? `${text.slice(0, 29)}…` : text;
}

function showNode(target, state, id) {
  const known = state.nodes.get(id) || {};
  const spec = known.spec || {};
  replace(
    target,
    h('h3', {}, `Node ${id}`),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Agent'), h('dd', {}, spec.agent || spec.kind || '—'),
      h('dt', {}, 'Status'), h('dd', {}, known.status || 'pending'),
      known.duration_ms !== undefined ? [h('dt', {}, 'Duration'), h('dd', {}, `${known.duration_ms} ms`)] : null,
    ),
    h('h4', {}, 'Inputs'),
    spec.inputs ? json(spec.inputs) : h('p', {}, 'The run input.'),
    h('h4', {}, 'Output'),
    state.outputs.has(id) ? json(state.outputs.get(id)) : h('p', {}, 'No output yet.'),
    state.errors.has(id) ? [h('h4', {}, 'Error'), h('p', { class: 'error' }, state.errors.get(id))] : null,
  );
}

function drawActions(target, runId, state, refollow) {
  const messages = messageArea();
  const post = async (verb, body, note) => {
    const accepted = await attempt(messages, () => api('POST', `/v1/runs/${encodeURIComponent(runId)}:${verb}`, body));
    if (!accepted) return;
    messages.ok(note);
    state.summary = { ...state.summary, status: accepted.status || 'running', error: null };
    if (accepted.run_id && accepted.run_id !== runId) {
      location.hash = routeHref('runs', accepted.run_id);
      return;
    }
    refollow();
  };
  const buttons = [];
  if (state.summary.status === 'waiting_for_human') {
    const reason = h('input', { type: 'text', name: 'reason', autocomplete: 'off' });
    const output = h('textarea', { name: 'output', rows: 3, spellcheck: 'false' }, '""');
    buttons.push(
      h('p', {}, `Waiting for a human at node ${state.humanNode || [...state.nodes].find(([, node]) => node.status === 'waiting_for_human')?.[0] || '?'}.`),
      h('button', { type: 'button', class: 'approve', onclick: () => post('approve', { mode: 'async' }, 'Approved: the node runs again.') }, 'Approve'),
      h('form', { class: 'inline', 'aria-label': 'Reject', onsubmit: (event) => { event.preventDefault(); post('reject', { mode: 'async', reason: reason.value || undefined }, 'Rejected.'); } }, field('Reason', reason), h('button', { type: 'submit', class: 'reject' }, 'Reject')),
      h('form', { class: 'inline', 'aria-label': 'Give input', onsubmit: (event) => {
        event.preventDefault();
        let value;
        try {
          value = JSON.parse(output.value);
        } catch (error) {
          messages.show(h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'The output is not JSON'), h('p', {}, String(error.message))));
          return;
        }
        post('input', { mode: 'async', output: value }, 'Input given: the run continues.');
      } }, field('Node output (JSON)', output), h('button', { type: 'submit' }, 'Give input')),
    );
  }
  if (state.summary.status === 'running') buttons.push(h('button', { type: 'button', class: 'cancel', onclick: () => post('cancel', undefined, 'Cancelled.') }, 'Cancel run'));
  replace(target, buttons, messages.element);
}

async function drawTimeline(target, runId) {
  const trace = await attempt(messageArea(), () => api('GET', `/v1/runs/${encodeURIComponent(runId)}/trace`));
  if (!trace || !(trace.nodes || []).length) {
    replace(target, h('p', {}, 'No finished nodes yet.'));
    return trace;
  }
  const starts = trace.nodes.map((node) => Date.parse(node.start_time));
  const ends = trace.nodes.map((node) => Date.parse(node.end_time));
  const first = Math.min(...starts);
  const span = Math.max(1, Math.max(...ends) - first);
  const rows = trace.nodes.map((node, index) => ({ node, left: ((starts[index] - first) / span) * 100, width: Math.max(0.5, ((ends[index] - starts[index]) / span) * 100), ms: ends[index] - starts[index] }));
  // Bars are drawn as SVG (widths as attributes), since the CSP forbids inline styles.
  replace(
    target,
    h('p', {}, `Total ${trace.duration_ms} ms · ${trace.total_tokens} tokens · cost ${Number(trace.total_cost || 0).toFixed(6)}`),
    table(
      [
        ['Node', (row) => row.node.node_id],
        ['Agent', (row) => row.node.agent],
        ['Status', (row) => row.node.status],
        ['Duration', (row) => `${row.ms} ms`],
        ['Tokens in/out', (row) => `${row.node.tokens_in}/${row.node.tokens_out}`],
        ['Cost', (row) => Number(row.node.cost || 0).toFixed(6)],
        ['When', (row) => svg('svg', { class: 'bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', width: 200, height: 12, role: 'img', 'aria-label': `${row.ms} ms` }, svg('rect', { x: row.left, y: 0, width: row.width, height: 10 }))],
      ],
      rows,
    ),
  );
  return trace;
}

async function drawCheckpoints(target, runId) {
  const messages = messageArea();
  const answer = await attempt(messages, () => api('GET', `/v1/runs/${encodeURIComponent(runId)}/checkpoints`));
  if (!answer) {
    replace(target, h('p', {}, 'This run keeps no checkpoints.'));
    return;
  }
  const list = answer.checkpoints || [];
  const resume = async (name) => {
    const accepted = await attempt(messages, () => api('POST', `/v1/runs/${encodeURIComponent(runId)}:resume`, { checkpoint: name, mode: 'async' }));
    if (accepted) location.hash = routeHref('runs', accepted.run_id);
  };
  replace(
    target,
    list.length
      ? table(
          [
            ['Checkpoint', (checkpoint) => checkpoint.name],
            ['Step', (checkpoint) => checkpoint.seq],
            ['Taken', (checkpoint) => time(checkpoint.created_at)],
            ['Action', (checkpoint) => h('button', { type: 'button', onclick: () => resume(checkpoint.name) }, `Resume from ${checkpoint.name}`)],
          ],
          list,
        )
      : h('p', {}, 'No named checkpoints.'),
    messages.element,
  );
}
