import { Signal } from '@lumino/signaling';
import { describe, expect, it, vi } from 'vitest';

// jsdom has no DragEvent, which @lumino/dragdrop (under @lumino/widgets) extends.
vi.hoisted(() => {
  const g = globalThis as { DragEvent?: unknown; MouseEvent: unknown };
  g.DragEvent ??= class extends (g.MouseEvent as typeof MouseEvent) {};
});
// The notebook package does not load in jsdom (styles, drag events); the sync needs
// only its `executed` signal from it. The sync itself runs for real.
vi.mock('@jupyterlab/notebook', async () => {
  const { Signal: S } = await import('@lumino/signaling');
  return { NotebookActions: { executed: new S<object, unknown>({}) } };
});

import { LINEAGE_MIME } from '../src/lineage';
import { LineageModel } from '../src/model';
import { NotebookLineageSync, deepEqual } from '../src/sync';
import { bundle } from './fixtures';

/** The parts of a code cell the sync reads and writes, with a log of metadata writes. */
class FakeCell {
  writes: unknown[] = [];
  metadata: Record<string, unknown> = {};
  outputs: { data: Record<string, unknown> }[] = [];
  readonly outputsChanged = new Signal<this, void>(this);
  readonly model = {
    type: 'code',
    id: '',
    outputs: {
      get length() {
        return 0;
      },
      get: (i: number) => this.outputs[i],
      changed: this.outputsChanged
    },
    getMetadata: (key: string) => this.metadata[key],
    setMetadata: (key: string, value: unknown) => {
      this.writes.push(value);
      this.metadata[key] = value;
    },
    deleteMetadata: (key: string) => delete this.metadata[key]
  };

  constructor(
    readonly id: string,
    payload?: Record<string, unknown>
  ) {
    this.model.id = id;
    Object.defineProperty(this.model.outputs, 'length', { get: () => this.outputs.length });
    if (payload) {
      this.outputs.push({ data: { [LINEAGE_MIME]: payload } });
    }
  }

  /** The kernel ran the cell: a new lineage output arrives. */
  run(payload: Record<string, unknown>): void {
    this.outputs = [{ data: { [LINEAGE_MIME]: payload } }];
    this.outputsChanged.emit();
  }
}

async function open(cells: FakeCell[], model = new LineageModel()) {
  const panel = {
    id: 'nb',
    context: { ready: Promise.resolve() },
    content: { model: { cells: { changed: new Signal<object, void>({}) } }, widgets: cells },
    disposed: new Signal<object, void>({})
  };
  const sync = new NotebookLineageSync(panel as never, model);
  await panel.context.ready;
  await Promise.resolve();
  return { sync, model };
}

describe('opening a notebook', () => {
  it('writes no metadata: an executed notebook stays unmodified', async () => {
    // nbclient (make demo) saves lineage outputs but no metadata.llmops.
    const executed = new FakeCell('c1', bundle({ cell_id: null, ui_url: 'http://127.0.0.1:5999' }));
    const { model } = await open([executed]);
    expect(executed.writes).toEqual([]);
    expect(model.cells('nb')).toHaveLength(1); // the panel still lists it
    // A saved record is not the kernel's state now, nor its ui_url.
    expect(model.pins('nb')!.live).toBe(false);
    expect(model.links.base).toBe('http://127.0.0.1:5000');
  });

  it('writes metadata when the cell runs, once per new record', async () => {
    const cell = new FakeCell('c1');
    const { model } = await open([cell]);
    const record = bundle({ cell_id: 'c1', record_id: 'r2', ui_url: 'http://127.0.0.1:5123/' });
    cell.run(record);
    expect(cell.writes).toEqual([record]);
    expect(model.pins('nb')!.live).toBe(true);
    expect(model.links.base).toBe('http://127.0.0.1:5123');
    // The same payload again (another output arrived), keys in another order: no write.
    cell.run(Object.fromEntries(Object.entries(record).reverse()));
    expect(cell.writes).toHaveLength(1);
  });
});

describe('deepEqual', () => {
  it('ignores key order and undefined keys, not values', () => {
    expect(deepEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 })).toBe(true);
    expect(deepEqual({ a: 1, x: undefined }, { a: 1 })).toBe(true);
    expect(deepEqual({ a: 1 }, { a: '1' })).toBe(false);
    expect(deepEqual([1, 2], [2, 1])).toBe(false);
    expect(deepEqual(undefined, {})).toBe(false);
  });
});
