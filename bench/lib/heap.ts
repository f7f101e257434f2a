/** A small reader of V8 heap snapshots: self size by constructor, and what grew between two snapshots. */
import { readFileSync } from 'node:fs';

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: [string[], ...unknown[]] } };
  readonly nodes: number[];
  readonly strings: string[];
}

export interface HeapRow {
  readonly name: string;
  readonly size: number;
  readonly count: number;
}

export function heapBySize(file: string): Map<string, { size: number; count: number }> {
  const data = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const totals = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < data.nodes.length; i += width) {
    const type = types[data.nodes[i + typeAt] as number] ?? '?';
    const named = type === 'object' || type === 'closure' || type === 'native';
    const name = named ? `${type}: ${data.strings[data.nodes[i + nameAt] as number]}` : `(${type})`;
    const entry = totals.get(name) ?? { size: 0, count: 0 };
    entry.size += data.nodes[i + sizeAt] as number;
    entry.count += 1;
    totals.set(name, entry);
  }
  return totals;
}

/** What grew from snapshot A to B, divided by `per` (sessions added), largest first. */
export function heapGrowth(before: string, after: string, per: number): { total: number; rows: HeapRow[] } {
  const a = heapBySize(before);
  const rows = [...heapBySize(after).entries()].map(([name, v]) => ({
    name,
    size: (v.size - (a.get(name)?.size ?? 0)) / per,
    count: (v.count - (a.get(name)?.count ?? 0)) / per,
  }));
  rows.sort((x, y) => y.size - x.size);
  return { total: rows.reduce((sum, row) => sum + row.size, 0), rows };
}
