// A small layered (Sugiyama-style) layout for run graphs, written here
// because ~80 lines do what a graph-layout dependency would: back edges of
// loops are set aside, each node's layer is its longest path from a source,
// nodes within a layer are ordered by the barycentre of their neighbours
// (a few sweeps down and up), then placed on a grid, left to right.

/**
 * Lays out `nodes` (ids) and `edges` ([from, to]): returns
 * {positions: Map id → {x, y}, width, height, backEdges: Set "from→to"}.
 */
export function layeredLayout(nodes, edges, { nodeWidth = 180, nodeHeight = 44, gapX = 60, gapY = 18 } = {}) {
  const outgoing = new Map(nodes.map((id) => [id, []]));
  const known = new Set(nodes);
  const usable = edges.filter(([from, to]) => known.has(from) && known.has(to) && from !== to);
  for (const [from, to] of usable) outgoing.get(from).push(to);
  // Back edges: those closing a cycle in an iterative depth-first search.
  const state = new Map();
  const backEdges = new Set();
  for (const root of nodes) {
    if (state.has(root)) continue;
    const stack = [[root, 0]];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = outgoing.get(top[0])[top[1]];
      if (next === undefined) {
        state.set(top[0], 2);
        stack.pop();
        continue;
      }
      top[1] += 1;
      if (state.get(next) === 1) backEdges.add(`${top[0]}→${next}`);
      else if (!state.has(next)) {
        state.set(next, 1);
        stack.push([next, 0]);
      }
    }
  }
  const forward = usable.filter(([from, to]) => !backEdges.has(`${from}→${to}`));
  // Longest-path layering in topological order (Kahn).
  const indegree = new Map(nodes.map((id) => [id, 0]));
  const successors = new Map(nodes.map((id) => [id, []]));
  const predecessors = new Map(nodes.map((id) => [id, []]));
  for (const [from, to] of forward) {
    indegree.set(to, indegree.get(to) + 1);
    successors.get(from).push(to);
    predecessors.get(to).push(from);
  }
  const layer = new Map(nodes.map((id) => [id, 0]));
  const queue = nodes.filter((id) => indegree.get(id) === 0);
  for (let at = 0; at < queue.length; at += 1) {
    const id = queue[at];
    for (const next of successors.get(id)) {
      layer.set(next, Math.max(layer.get(next), layer.get(id) + 1));
      indegree.set(next, indegree.get(next) - 1);
      if (indegree.get(next) === 0) queue.push(next);
    }
  }
  const layers = [];
  for (const id of nodes) {
    const index = layer.get(id);
    (layers[index] ||= []).push(id);
  }
  // Barycentre ordering: two sweeps each way.
  const order = new Map();
  const renumber = (row) => row.forEach((id, index) => order.set(id, index));
  layers.forEach(renumber);
  const barycentre = (id, neighbours) => {
    const list = neighbours.get(id);
    if (!list.length) return order.get(id);
    return list.reduce((sum, other) => sum + order.get(other), 0) / list.length;
  };
  for (let sweep = 0; sweep < 2; sweep += 1) {
    for (let i = 1; i < layers.length; i += 1) {
      layers[i].sort((x, y) => barycentre(x, predecessors) - barycentre(y, predecessors));
      renumber(layers[i]);
    }
    for (let i = layers.length - 2; i >= 0; i -= 1) {
      layers[i].sort((x, y) => barycentre(x, successors) - barycentre(y, successors));
      renumber(layers[i]);
    }
  }
  const tallest = Math.max(1, ...layers.map((row) => row.length));
  const positions = new Map();
  layers.forEach((row, column) => {
    const offset = ((tallest - row.length) * (nodeHeight + gapY)) / 2;
    row.forEach((id, index) => {
      positions.set(id, { x: column * (nodeWidth + gapX) + 10, y: offset + index * (nodeHeight + gapY) + 10 });
    });
  });
  return {
    positions,
    width: layers.length * (nodeWidth + gapX) - gapX + 20,
    height: tallest * (nodeHeight + gapY) - gapY + 20,
    backEdges,
    nodeWidth,
    nodeHeight,
  };
}
