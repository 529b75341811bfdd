/**
 * MIME renderer for `application/vnd.llmops.lineage+json`: the badge row under a
 * cell that did LLM work.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { LINEAGE_MIME, LineageFormatError, parseLineage } from './lineage';
import { mlflowLinks } from './links';
import { renderBadges, renderLineageError } from './views/badges';

export class LineageRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this._mimeType = options.mimeType;
    this.addClass('jp-llmops-lineage-output');
    mlflowLinks.changed.connect(this._render, this);
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._payload = model.data[this._mimeType];
    this._render();
    return Promise.resolve();
  }

  dispose(): void {
    mlflowLinks.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    // Keep the expanded/collapsed state across re-renders (a settings change).
    const open = this.node.querySelector('details')?.hasAttribute('open') ?? false;
    let view: HTMLElement;
    try {
      const record = parseLineage(this._payload);
      view = renderBadges(record, { mlflowBase: mlflowLinks.base, source: 'output', open });
    } catch (e) {
      if (!(e instanceof LineageFormatError)) {
        throw e;
      }
      view = renderLineageError(e.message);
    }
    this.node.replaceChildren(view);
  }

  private _mimeType: string;
  private _payload: unknown = null;
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  // Rendering is text-only (no markup from the payload), so untrusted notebooks
  // may show it too.
  safe: true,
  mimeTypes: [LINEAGE_MIME],
  defaultRank: 50,
  createRenderer: options => new LineageRenderer(options)
};

const extension: IRenderMime.IExtension = {
  id: 'llmops-magics:lineage-renderer',
  description: 'Lineage badges for cells that did LLM work.',
  rendererFactory,
  rank: 50,
  dataType: 'json'
};

export default extension;
