/**
 * Keeps one notebook's lineage in step: copies each lineage bundle into the cell's
 * `metadata.llmops` as it arrives, feeds the model the panel renders, and draws
 * badges from metadata where the outputs no longer carry them.
 */
import { Cell, CodeCell } from '@jupyterlab/cells';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';
import { PanelLayout, Widget } from '@lumino/widgets';

import {
  LINEAGE_MIME,
  LineageFormatError,
  LineageRecord,
  describesCell,
  parseLineage
} from './lineage';
import { LineageModel, byStarted } from './model';
import { MetadataBadge } from './views/cellBadge';

export const METADATA_KEY = 'llmops';

/** The last lineage payload among a code cell's outputs, if any. */
export function lineageOutput(cell: CodeCell): unknown {
  const outputs = cell.model.outputs;
  for (let i = outputs.length - 1; i >= 0; i--) {
    const data = outputs.get(i).data;
    if (data && data[LINEAGE_MIME] !== undefined) {
      return data[LINEAGE_MIME];
    }
  }
  return undefined;
}

function read(payload: unknown): LineageRecord | null {
  try {
    return parseLineage(payload);
  } catch (e) {
    if (e instanceof LineageFormatError) {
      return null;
    }
    throw e;
  }
}

/** This cell's own lineage among its outputs: payload as received, and parsed. */
function ownLineage(cell: CodeCell): { payload: unknown; record: LineageRecord } | null {
  const payload = lineageOutput(cell);
  const record = payload === undefined ? null : read(payload);
  return record && describesCell(record, cell.model.id) ? { payload, record } : null;
}

/**
 * Structural equality of JSON values, key order ignored: a notebook saved by another
 * tool may hold the same lineage with its keys sorted differently.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) {
    return true;
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return false;
  }
  if (Array.isArray(a) !== Array.isArray(b)) {
    return false;
  }
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((x, i) => deepEqual(x, other[i]));
  }
  const ka = Object.keys(a as object).filter(k => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter(k => (b as Record<string, unknown>)[k] !== undefined);
  return (
    ka.length === kb.length &&
    ka.every(k => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}

function isCode(cell: Cell): cell is CodeCell {
  return cell.model.type === 'code';
}

export class NotebookLineageSync implements IDisposable {
  constructor(
    private _panel: NotebookPanel,
    private _model: LineageModel
  ) {
    NotebookActions.executed.connect(this._onExecuted, this);
    void _panel.context.ready.then(() => {
      if (this.isDisposed) {
        return;
      }
      this._panel.content.model?.cells.changed.connect(this._onCellsChanged, this);
      this._scan(true);
    });
    _panel.disposed.connect(() => this.dispose());
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    NotebookActions.executed.disconnect(this._onExecuted, this);
    this._model.closeNotebook(this._panel.id);
  }

  private _onCellsChanged(): void {
    this._scan(false);
    // Cell widgets for inserted models may be created after this signal.
    setTimeout(() => !this._disposed && this._scan(false), 0);
  }

  /** Watch cells not seen yet; on first load, ingest saved lineage oldest first. */
  private _scan(initial: boolean): void {
    const cells = this._panel.content.widgets;
    const fresh = cells.filter(c => isCode(c) && !this._watched.has(c)) as CodeCell[];
    const loaded: { cell: CodeCell; record: LineageRecord }[] = [];
    for (const cell of fresh) {
      this._watched.add(cell);
      cell.model.outputs.changed.connect(() => this._sync(cell, true));
      const saved = cell.model.getMetadata(METADATA_KEY);
      const record = ownLineage(cell)?.record ?? (saved === undefined ? null : read(saved));
      if (record) {
        loaded.push({ cell, record });
      }
      this._sync(cell, false);
    }
    const order = initial ? byStarted(loaded) : loaded;
    for (const { cell, record } of order) {
      // What a notebook was saved with, or cells pasted in: not the kernel's doing now.
      this._model.ingest(this._panel.id, cell.model.id, record, false);
    }
    this._model.setOrder(
      this._panel.id,
      cells.map(c => c.model.id)
    );
  }

  /**
   * Bring model and badges in line with the cell's outputs. `live`: the outputs just
   * changed (the cell ran); only then is `metadata.llmops` written, so opening or
   * viewing a saved notebook never modifies it.
   */
  private _sync(cell: CodeCell, live = true): void {
    const own = ownLineage(cell);
    if (own) {
      if (live) {
        // The kernel says where its MLflow UI is; the lab setting, if set, still wins.
        this._model.links.setKernelBase(own.record.ui_url);
        if (!deepEqual(cell.model.getMetadata(METADATA_KEY), own.payload)) {
          cell.model.setMetadata(METADATA_KEY, own.payload);
          this._model.ingest(this._panel.id, cell.model.id, own.record);
        }
      }
      this._setBadge(cell, null);
      return;
    }
    // Metadata badges only where the outputs show no lineage at all.
    const saved =
      lineageOutput(cell) === undefined ? cell.model.getMetadata(METADATA_KEY) : undefined;
    this._setBadge(cell, saved === undefined ? null : read(saved));
  }

  /** A cell that ran without llmops work no longer carries the old lineage. */
  private _onExecuted(_: unknown, args: { notebook: unknown; cell: Cell }): void {
    if (args.notebook !== this._panel.content || !isCode(args.cell)) {
      return;
    }
    const cell = args.cell;
    if (!ownLineage(cell) && cell.model.getMetadata(METADATA_KEY) !== undefined) {
      cell.model.deleteMetadata(METADATA_KEY);
      this._setBadge(cell, null);
      this._model.forget(this._panel.id, cell.model.id);
    }
  }

  /** Show badges from metadata under the cell, or none; a badge widget is made on first use. */
  private _setBadge(cell: CodeCell, record: LineageRecord | null): void {
    let badge = this._badges.get(cell);
    if (!badge && record === null) {
      return;
    }
    if (!badge) {
      badge = new MetadataBadge();
      const layout = cell.layout as PanelLayout;
      const wrapper = cell.outputArea.parent as Widget | null;
      const at = wrapper ? layout.widgets.indexOf(wrapper) : -1;
      if (at >= 0) {
        layout.insertWidget(at + 1, badge);
      } else {
        layout.addWidget(badge);
      }
      this._badges.set(cell, badge);
    }
    badge.record = record;
  }

  private _disposed = false;
  private _watched = new WeakSet<Cell>();
  private _badges = new WeakMap<Cell, MetadataBadge>();
}
