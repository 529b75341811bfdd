import { describe, expect, it } from 'vitest';

import { parseLineage } from '../src/lineage';
import { LineageModel } from '../src/model';
import { renderBadges } from '../src/views/badges';
import { renderPanel } from '../src/views/panel';
import { XSS, bundle } from './fixtures';

const BASE = 'http://127.0.0.1:5000';

describe('badges', () => {
  it('show prompt and model versions, status and the run link', () => {
    const el = renderBadges(parseLineage(bundle()), { mlflowBase: BASE, source: 'output' });
    const text = el.querySelector('summary')!.textContent!;
    expect(text).toContain('summarize v4');
    expect(text).toContain('chat v2');
    expect(text).toContain('ok');
    const link = el.querySelector('summary a') as HTMLAnchorElement;
    expect(link.getAttribute('href')).toBe(`${BASE}/#/experiments/7/runs/3f2a1b2c9d8e7f60`);
    expect(link.getAttribute('target')).toBe('_blank');
    expect(el.hasAttribute('open')).toBe(false);
  });

  it('details hold pins, digests, tokens, latency and table versions', () => {
    const el = renderBadges(parseLineage(bundle()), { mlflowBase: BASE, source: 'metadata' });
    const details = el.querySelector('.jp-llmops-details')!.textContent!;
    for (const expected of [
      '@production',
      '0123456789ab',
      'feedfacecafe',
      '31 in / 16 out',
      'latency 0.42 s',
      'docs',
      'backfill'
    ]) {
      expect(details).toContain(expected);
    }
    expect(el.dataset.source).toBe('metadata');
  });

  it('an error cell and a drifted pin are flagged', () => {
    const record = parseLineage(
      bundle({
        status: 'error',
        error_type: 'PromptNotFound',
        pins: [
          {
            kind: 'prompt',
            name: 'summarize',
            version: 4,
            alias: 'production',
            alias_now: 5,
            drift: true
          }
        ]
      })
    );
    const text = renderBadges(record, { mlflowBase: BASE, source: 'output' }).querySelector(
      'summary'
    )!.textContent!;
    expect(text).toContain('error PromptNotFound');
    expect(text).toContain('1 pin drifted');
  });

  it('render every kernel string as text, never markup', () => {
    const hostile = bundle({
      prompts: [{ name: XSS, version: XSS, digest: XSS }],
      models: [{ name: XSS, version: 1, digest: '', backend: XSS }],
      pins: [
        { kind: XSS, name: XSS, version: 1, alias: XSS, alias_now: 2, drift: true, message: XSS }
      ],
      summary: XSS,
      error_type: XSS,
      status: 'error',
      shadow: [{ name: XSS, verdict: XSS, run_id: XSS }]
    });
    const el = renderBadges(parseLineage(hostile), {
      mlflowBase: BASE,
      source: 'output',
      open: true
    });
    expect(el.querySelector('img')).toBeNull();
    expect(el.textContent).toContain(XSS);
  });
});

describe('panel', () => {
  it('lists pins with drift, cells, shadow verdicts and escapes names', () => {
    const model = new LineageModel();
    model.ingest(
      'nb',
      'c1',
      parseLineage(
        bundle({ shadow: [{ name: XSS, verdict: 'regressed', run_id: '3f2a1b2c9d8e7f60' }] })
      )
    );
    model.ingest(
      'nb',
      'c2',
      parseLineage(
        bundle({
          execution_count: 5,
          pins: [
            {
              kind: 'prompt',
              name: XSS,
              version: 4,
              alias: 'production',
              alias_now: 5,
              drift: true,
              message: 'moved'
            }
          ]
        })
      )
    );
    const revealed: string[] = [];
    const el = renderPanel(
      {
        notebookName: 'demo.ipynb',
        pins: model.pins('nb'),
        cells: model.cells('nb'),
        shadows: model.shadows('nb'),
        mlflowBase: BASE
      },
      { revealCell: key => revealed.push(key) }
    );
    expect(el.querySelector('img')).toBeNull();
    expect(el.querySelector('.jp-llmops-drift-banner')!.textContent).toContain('1 pin drifted');
    expect(el.querySelector('.jp-llmops-pin-drift')!.textContent).toContain(`prompt ${XSS} v4`);
    expect(el.querySelector('.jp-llmops-pin-drift')!.textContent).toContain('@production now → v5');
    const cells = el.querySelectorAll<HTMLElement>('.jp-llmops-cell-item');
    expect(cells).toHaveLength(2);
    cells[1].click();
    expect(revealed).toEqual(['c2']);
    expect(el.querySelector('.jp-llmops-shadow-item')!.textContent).toContain(`${XSS} regressed`);
    expect(el.querySelector('.jp-llmops-mlflow-link')!.getAttribute('href')).toBe(
      `${BASE}/#/experiments`
    );
  });

  it('says what to do when nothing is there yet', () => {
    const el = renderPanel(
      { notebookName: null, pins: null, cells: [], shadows: [], mlflowBase: 'not a url' },
      { revealCell: () => undefined }
    );
    expect(el.textContent).toContain('%llm_pin prompt NAME@ALIAS');
    expect(el.textContent).toContain('Set the MLflow UI base URL');
  });
});
