/**
 * Wiring only: the LLMOps panel, the per-notebook lineage sync, the MLflow URL
 * setting and the command that opens the panel.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { llmopsIcon } from './icon';
import { mlflowLinks } from './links';
import { LineageModel } from './model';
import { NotebookLineageSync } from './sync';
import { LlmopsPanel } from './views/panelWidget';

const PLUGIN_ID = 'llmops-magics:plugin';

export const CommandIDs = {
  openPanel: 'llmops:open-panel'
} as const;

function applySettings(settings: ISettingRegistry.ISettings): void {
  // Only a value the user set overrides the kernel's ui_url; unset or empty follows it.
  const url = settings.get('mlflowUiUrl').user as string | undefined;
  const problem = mlflowLinks.setBase(url);
  if (problem) {
    Notification.warning(`LLMOps: ${problem}`, { autoClose: 8000 });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Lineage badges, the LLMOps side panel and lineage kept in cell metadata.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry, ICommandPalette, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    registry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    labShell: ILabShell | null
  ) => {
    const model = new LineageModel(mlflowLinks);
    const revealCell = (cellKey: string) => {
      const panel = tracker.find(p => p.id === model.active);
      const cell = panel?.content.widgets.find(c => c.model.id === cellKey);
      if (!panel || !cell) {
        return;
      }
      app.shell.activateById(panel.id);
      panel.content.activeCellIndex = panel.content.widgets.indexOf(cell);
      void panel.content.scrollToCell(cell, 'center');
    };
    const notebookName = (key: string) => tracker.find(p => p.id === key)?.context.path ?? null;

    const panel = new LlmopsPanel(model, { revealCell }, notebookName);
    panel.id = 'llmops-panel';
    panel.title.icon = llmopsIcon;
    panel.title.caption = 'LLMOps';
    app.shell.add(panel, labShell ? 'right' : 'left', { rank: 900 });

    tracker.widgetAdded.connect((_, nb) => new NotebookLineageSync(nb, model));
    tracker.forEach(nb => new NotebookLineageSync(nb, model));
    tracker.currentChanged.connect((_, nb) => {
      if (nb) {
        model.active = nb.id;
      }
    });
    model.active = tracker.currentWidget?.id ?? null;

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'LLMOps: Show Lineage Panel',
      icon: llmopsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: CommandIDs.openPanel, category: 'LLMOps' });

    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then(settings => {
          applySettings(settings);
          settings.changed.connect(applySettings);
        })
        .catch(reason => Notification.error(`LLMOps: could not load settings: ${reason}`));
    }
  }
};

export default plugin;
