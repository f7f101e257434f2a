/**
 * `node dist/bench/tools/heap-summary.js A.heapsnapshot [B.heapsnapshot] [--per N]`:
 * the self size of a V8 heap snapshot by constructor name, or, given two,
 * what grew from A to B divided by N (the sessions added, for bytes per session).
 */
import { heapBySize, heapGrowth, type HeapRow } from '../lib/heap.js';

const args = process.argv.slice(2);
const perIndex = args.indexOf('--per');
const per = perIndex === -1 ? 1 : Number(args[perIndex + 1]);
const files = args.filter((arg, i) => !arg.startsWith('--') && (perIndex === -1 || i !== perIndex + 1));
const [first, second] = files;
if (first === undefined) {
  process.stderr.write('usage: heap-summary A.heapsnapshot [B.heapsnapshot] [--per N]\n');
  process.exit(2);
}
let rows: HeapRow[];
if (second === undefined) {
  rows = [...heapBySize(first).entries()]
    .map(([name, v]) => ({ name, size: v.size / per, count: v.count / per }))
    .sort((x, y) => y.size - x.size);
} else {
  rows = heapGrowth(first, second, per).rows;
}
const total = rows.reduce((sum, row) => sum + row.size, 0);
process.stdout.write(`total ${second === undefined ? '' : 'growth '}${total.toFixed(0)} bytes${per === 1 ? '' : ` per unit (÷${per})`}\n`);
for (const row of rows.slice(0, 40))
  process.stdout.write(`${row.size.toFixed(0).padStart(10)} B  ${row.count.toFixed(2).padStart(8)} objs  ${row.name}\n`);
