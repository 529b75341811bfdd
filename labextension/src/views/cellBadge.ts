/**
 * Badges drawn from `metadata.llmops` for a cell whose outputs no longer hold the
 * lineage bundle (outputs cleared, or a notebook saved without outputs).
 */
import { Widget } from '@lumino/widgets';

import { LineageRecord } from '../lineage';
import { mlflowLinks } from '../links';
import { renderBadges } from './badges';

export class MetadataBadge extends Widget {
  constructor() {
    super();
    this.addClass('jp-llmops-cell-lineage');
    mlflowLinks.changed.connect(this._render, this);
  }

  set record(record: LineageRecord | null) {
    this._record = record;
    this._render();
  }

  dispose(): void {
    mlflowLinks.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    if (!this._record) {
      this.node.replaceChildren();
      this.hide();
      return;
    }
    const open = this.node.querySelector('details')?.hasAttribute('open') ?? false;
    this.node.replaceChildren(
      renderBadges(this._record, { mlflowBase: mlflowLinks.base, source: 'metadata', open })
    );
    this.show();
  }

  private _record: LineageRecord | null = null;
}
