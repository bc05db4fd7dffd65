// A line diff (longest common subsequence) for policy texts and card
// versions: small inputs, so the plain O(n·m) table is enough and saves a
// dependency.

/** The lines of `before` and `after` as [kind, line] with kind ' ', '-' or '+'. */
export function diffLines(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  // Common head and tail are cut first, so typical edits stay cheap.
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const middleA = a.slice(head, a.length - tail);
  const middleB = b.slice(head, b.length - tail);
  const out = a.slice(0, head).map((line) => [' ', line]);
  if (middleA.length * middleB.length > 4_000_000) {
    // Too large to align: shown as replaced.
    middleA.forEach((line) => out.push(['-', line]));
    middleB.forEach((line) => out.push(['+', line]));
  } else {
    const n = middleA.length;
    const m = middleB.length;
    const lengths = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i -= 1) {
      for (let j = m - 1; j >= 0; j -= 1) {
        lengths[i][j] = middleA[i] === middleB[j] ? lengths[i + 1][j + 1] + 1 : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (middleA[i] === middleB[j]) {
        out.push([' ', middleA[i]]);
        i += 1;
        j += 1;
      } else if (lengths[i + 1][j] >= lengths[i][j + 1]) {
        out.push(['-', middleA[i]]);
        i += 1;
      } else {
        out.push(['+', middleB[j]]);
        j += 1;
      }
    }
    while (i < n) out.push(['-', middleA[i++]]);
    while (j < m) out.push(['+', middleB[j++]]);
  }
  a.slice(a.length - tail).forEach((line) => out.push([' ', line]));
  return out;
}
