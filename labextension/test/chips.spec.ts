import { describe, expect, it } from 'vitest';

import { oneLine, parseLineage } from '../src/lineage';
import { LineageModel, MlflowLinks } from '../src/model';
import { renderBadges } from '../src/views/badges';
import { renderPanel } from '../src/views/panel';
import { bundle } from './fixtures';

const BASE = 'http://127.0.0.1:5000';

function chips(overrides: Record<string, unknown>): HTMLElement[] {
  const el = renderBadges(parseLineage(bundle(overrides)), { mlflowBase: BASE, source: 'output' });
  return [...el.querySelectorAll<HTMLElement>('summary .jp-llmops-chip')];
}

function chipTexts(overrides: Record<string, unknown>): string[] {
  return chips(overrides).map(c => c.textContent!);
}

const adapter = (verdict: string) => ({
  adapter_checks: [{ adapter: 'adapters/in-short', verdict, run_id: 'a8778d68f250' }]
});
const shadow = (verdict: string) => ({
  shadow: [{ name: 'quickstart', verdict, run_id: '3f2a1b2c9d8e7f60' }]
});

describe('verdict chips', () => {
  it.each([
    [adapter('degraded'), 'degraded', 'bad'],
    [adapter('breaking'), 'breaking', 'bad'],
    [adapter('compatible'), 'compatible', 'good'],
    [shadow('worse'), 'worse', 'bad'],
    [shadow('equivalent'), 'equivalent', 'good'],
    [shadow('inconclusive'), 'inconclusive', 'neutral']
  ])('%o: the chip says %s, toned %s, and no "ok" chip', (overrides, verdict, tone) => {
    const all = chips(overrides);
    const verdictChip = all.find(c => c.classList.contains('jp-llmops-verdict-chip'))!;
    expect(verdictChip.querySelector('.jp-llmops-chip-value')!.textContent).toBe(verdict);
    expect(verdictChip.dataset.tone).toBe(tone);
    // Bad news gets the warning colour, good news the green one, neutral neither.
    expect(verdictChip.classList.contains('jp-llmops-chip-error')).toBe(tone === 'bad');
    expect(verdictChip.classList.contains('jp-llmops-chip-ok')).toBe(tone === 'good');
    expect(all.some(c => c.textContent === '✓ok')).toBe(false);
  });

  it('a cell without a verdict still says ok; an error cell says error, verdict or not', () => {
    expect(chipTexts({})).toContain('✓ok');
    const failed = chipTexts({ status: 'error', error_type: 'Boom', ...shadow('worse') });
    expect(failed).toContain('✗error Boom');
    expect(failed).toContain('shadowworse');
  });
});

describe('registry work', () => {
  const registered = {
    prompts: [],
    models: [{ name: 'chat', version: '2', digest: 'af39a9', backend: null }],
    runs: [],
    registry: [
      { action: 'registered', kind: 'model', name: 'chat', version: '2' },
      { action: 'alias', kind: 'model', name: 'chat', alias: 'challenger', from: null, to: '2' }
    ]
  };
  const pinned = {
    prompts: [{ name: 'summarize', version: '1', digest: 'c75f' }],
    models: [],
    runs: [],
    registry: [
      { action: 'pinned', kind: 'prompt', name: 'summarize', version: '1', alias: 'production' }
    ]
  };

  it('badges name what was done, once', () => {
    expect(chipTexts(registered)).toEqual([
      '✓ok',
      'registeredmodel chat v2',
      'aliaschallenger -> 2'
    ]);
    expect(chipTexts(pinned)).toEqual(['✓ok', 'pinnedprompt summarize v1']);
  });

  it('the panel line says it too, instead of "llmops work"', () => {
    expect(oneLine(parseLineage(bundle(registered)))).toBe(
      'registered model chat/2 · challenger -> 2'
    );
    expect(oneLine(parseLineage(bundle(pinned)))).toBe('pinned prompt summarize/1');
    // An older kernel sent alias moves only, under `aliases`.
    const old = bundle({
      prompts: [],
      models: [],
      aliases: [{ kind: 'prompt', name: 'summarize', alias: 'production', from: 1, to: 2 }]
    });
    expect(oneLine(parseLineage(old))).toBe('summarize@production 1 -> 2');
  });
});

describe('panel labels', () => {
  function panel(model: LineageModel) {
    return renderPanel(
      {
        notebookName: 'quickstart.ipynb',
        pins: model.pins('nb'),
        cells: model.cells('nb'),
        shadows: model.shadows('nb'),
        mlflowBase: BASE
      },
      { revealCell: () => undefined }
    );
  }

  it('an unversioned model has no stray slash; a shadow cell shows its verdict', () => {
    const model = new LineageModel();
    model.ingest(
      'nb',
      'c7',
      parseLineage(
        bundle({
          execution_count: 7,
          prompts: [],
          models: [{ name: 'default', version: null, backend: 'vllm' }]
        })
      )
    );
    model.ingest(
      'nb',
      'c11',
      parseLineage(bundle({ execution_count: 11, models: [], ...shadow('inconclusive') }))
    );
    const items = [...panel(model).querySelectorAll('.jp-llmops-cell-item')].map(
      li => li.textContent
    );
    expect(items[0]).toMatch(/^\[7\] model default(?!\/)/);
    expect(items[1]).toContain('shadow quickstart inconclusive');
  });

  it('pins read from a saved notebook are not called the kernel state', () => {
    const model = new LineageModel();
    model.ingest('nb', 'c21', parseLineage(bundle({ execution_count: 21 })), false);
    const saved = panel(model).querySelector('.jp-llmops-panel-origin')!.textContent!;
    expect(saved).not.toContain('kernel state');
    expect(saved).toContain('as saved with cell [21]');
    model.ingest('nb', 'c3', parseLineage(bundle({ execution_count: 3 })));
    expect(panel(model).querySelector('.jp-llmops-panel-origin')!.textContent).toBe(
      'kernel state as of cell [3]'
    );
  });
});

describe('one setting governs links', () => {
  it("links follow the kernel's ui_url unless the lab setting is set", () => {
    const links = new MlflowLinks();
    const seen: string[] = [];
    links.changed.connect((_, base) => seen.push(base));
    expect(links.base).toBe(BASE); // nobody said anything yet
    links.setKernelBase('http://127.0.0.1:5123/');
    expect([links.base, links.origin]).toEqual(['http://127.0.0.1:5123', 'kernel']);
    expect(links.setBase('https://mlflow.example')).toBeNull();
    expect([links.base, links.origin]).toEqual(['https://mlflow.example', 'lab setting']);
    links.setKernelBase('http://127.0.0.1:5999');
    expect(links.base).toBe('https://mlflow.example'); // the lab setting overrides
    expect(links.setBase('')).toBeNull(); // cleared: follow the kernel again
    expect(links.base).toBe('http://127.0.0.1:5999');
    links.setKernelBase('javascript:alert(1)');
    expect(links.base).toBe('http://127.0.0.1:5999');
    expect(seen).toEqual([
      'http://127.0.0.1:5123',
      'https://mlflow.example',
      'http://127.0.0.1:5999'
    ]);
  });

  it('badge run links use that base', () => {
    const links = new MlflowLinks();
    links.setKernelBase('http://127.0.0.1:5123');
    const el = renderBadges(parseLineage(bundle()), { mlflowBase: links.base, source: 'output' });
    expect(el.querySelector('summary a')!.getAttribute('href')).toBe(
      'http://127.0.0.1:5123/#/experiments/7/runs/3f2a1b2c9d8e7f60'
    );
  });
});
