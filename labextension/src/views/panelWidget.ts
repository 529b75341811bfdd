/** The LLMOps side panel widget: re-renders the active notebook's lineage. */
import { Widget } from '@lumino/widgets';

import { LineageModel } from '../model';
import { PanelActions, renderPanel } from './panel';

export class LlmopsPanel extends Widget {
  constructor(
    private _model: LineageModel,
    private _actions: PanelActions,
    private _notebookName: (key: string) => string | null
  ) {
    super();
    this.addClass('jp-llmops-panel');
    _model.changed.connect((_, key) => key === _model.active && this.update());
    _model.activeChanged.connect(() => this.update());
    _model.links.changed.connect(() => this.update());
  }

  protected onAfterShow(): void {
    this.update();
  }

  protected onUpdateRequest(): void {
    if (!this.isVisible) {
      return;
    }
    const key = this._model.active;
    this.node.replaceChildren(
      renderPanel(
        {
          notebookName: key ? this._notebookName(key) : null,
          pins: key ? this._model.pins(key) : null,
          cells: key ? this._model.cells(key) : [],
          shadows: key ? this._model.shadows(key) : [],
          mlflowBase: this._model.links.base,
          mlflowOrigin: this._model.links.origin
        },
        this._actions
      )
    );
  }
}
