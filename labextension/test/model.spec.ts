import { describe, expect, it } from 'vitest';

import {
  LineageFormatError,
  describesCell,
  mlflowBase,
  parseLineage,
  runUrl
} from '../src/lineage';
import { LineageModel, MlflowLinks, byStarted } from '../src/model';
import { bundle } from './fixtures';

describe('parseLineage', () => {
  it('reads the kernel bundle, as an object or as JSON text', () => {
    for (const payload of [bundle(), JSON.stringify(bundle())]) {
      const r = parseLineage(payload);
      expect(r.prompts).toEqual([
        { name: 'summarize', version: '4', digest: 'sha256:0123456789abcdef0123' }
      ]);
      expect(r.models[0]).toMatchObject({ name: 'chat', version: '2', backend: 'vllm' });
      expect(r.tokens).toEqual({ prompt: 31, completion: 16 });
      expect(r.status).toBe('ok');
      expect(r.error_type).toBe('');
    }
  });

  it('coerces odd fields to text instead of passing objects to views', () => {
    const r = parseLineage(
      bundle({ prompts: [{ name: { nested: 1 }, version: null }], pins: 'nope', tokens: 5 })
    );
    expect(r.prompts[0].name).toBe('{"nested":1}');
    expect(r.prompts[0].version).toBe('');
    expect(r.pins).toEqual([]);
    expect(r.tokens).toEqual({ prompt: null, completion: null });
  });

  it('refuses a non-object and a newer record version with the fix', () => {
    expect(() => parseLineage('[1, 2]')).toThrow(LineageFormatError);
    expect(() => parseLineage('{oops')).toThrow('not JSON');
    expect(() => parseLineage(bundle({ version: 3 }))).toThrow(/pip install -U llmops-magics/);
  });

  it('reads version 1 records (saved before per-generation digests) and version 2', () => {
    expect(parseLineage(bundle({ version: 1 })).version).toBe(1);
    expect(parseLineage(bundle({ version: 2 })).version).toBe(2);
  });
});

describe('describesCell', () => {
  it('a record stamped with another cell id belongs to that cell only', () => {
    expect(describesCell(parseLineage(bundle({ cell_id: 'c1' })), 'c1')).toBe(true);
    expect(describesCell(parseLineage(bundle({ cell_id: 'c1' })), 'c2')).toBe(false);
    expect(describesCell(parseLineage(bundle({ cell_id: null })), 'c2')).toBe(true);
  });
});

describe('MLflow links', () => {
  it('builds the run route and percent-encodes ids', () => {
    expect(runUrl('http://127.0.0.1:5000/', { run_id: 'abc', experiment_id: '7' })).toBe(
      'http://127.0.0.1:5000/#/experiments/7/runs/abc'
    );
    expect(runUrl('https://mlflow.example', { run_id: 'a/b', experiment_id: '1 2' })).toBe(
      'https://mlflow.example/#/experiments/1%202/runs/a%2Fb'
    );
  });

  it('never links to a non-http base', () => {
    expect(mlflowBase('javascript:alert(1)')).toBeNull();
    expect(runUrl('javascript:alert(1)//', { run_id: 'abc', experiment_id: '1' })).toBeNull();
  });

  it('keeps the previous base and explains the fix on a bad URL', () => {
    const links = new MlflowLinks();
    const seen: string[] = [];
    links.changed.connect((_, url) => seen.push(url));
    expect(links.setBase('http://mlflow:5000/')).toBeNull();
    expect(links.setBase('ftp://x')).toMatch(/not an http\(s\) address.*Settings > LLMOps/);
    expect(links.base).toBe('http://mlflow:5000');
    expect(seen).toEqual(['http://mlflow:5000']);
  });
});

describe('LineageModel', () => {
  it('takes the newest record as the kernel pin state and flags drift', () => {
    const model = new LineageModel();
    const changes: string[] = [];
    model.changed.connect((_, key) => changes.push(key));
    model.ingest('nb', 'c1', parseLineage(bundle()));
    const moved = bundle({
      execution_count: 4,
      pins: [
        {
          kind: 'prompt',
          name: 'summarize',
          version: 4,
          alias: 'production',
          alias_now: 5,
          drift: true,
          message: 'production moved 4 -> 5'
        }
      ]
    });
    model.ingest('nb', 'c2', parseLineage(moved));
    const pins = model.pins('nb')!;
    expect(pins.cellKey).toBe('c2');
    expect(pins.drifted.map(p => p.name)).toEqual(['summarize']);
    expect(pins.executionCount).toBe(4);
    expect(changes).toEqual(['nb', 'nb']);
  });

  it('lists cells in document order and forgets removed cells', () => {
    const model = new LineageModel();
    model.ingest('nb', 'b', parseLineage(bundle()));
    model.ingest('nb', 'a', parseLineage(bundle()));
    model.setOrder('nb', ['a', 'x', 'b']);
    expect(model.cells('nb').map(c => c.cellKey)).toEqual(['a', 'b']);
    model.setOrder('nb', ['b']);
    expect(model.cells('nb').map(c => c.cellKey)).toEqual(['b']);
    model.forget('nb', 'b');
    expect(model.pins('nb')).toBeNull();
  });

  it('re-running a cell replaces its lineage', () => {
    const model = new LineageModel();
    model.ingest('nb', 'c', parseLineage(bundle({ execution_count: 1 })));
    model.ingest('nb', 'c', parseLineage(bundle({ execution_count: 2 })));
    expect(model.cells('nb')).toHaveLength(1);
    expect(model.cells('nb')[0].record.execution_count).toBe(2);
  });

  it('gathers shadow verdicts newest first with their experiment', () => {
    const model = new LineageModel();
    model.ingest(
      'nb',
      'c1',
      parseLineage(
        bundle({
          shadow: [{ name: 'old', verdict: 'same', run_id: 'r1' }],
          runs: [{ run_id: 'r1', experiment_id: '3', kind: 'shadow' }]
        })
      )
    );
    model.ingest(
      'nb',
      'c2',
      parseLineage(
        bundle({
          shadow: [{ name: 'new', verdict: 'regressed', run_id: 'r2' }],
          runs: [{ run_id: 'r2', experiment_id: '9', kind: 'shadow' }]
        })
      )
    );
    expect(model.shadows('nb').map(s => [s.name, s.verdict, s.experiment_id, s.cellKey])).toEqual([
      ['new', 'regressed', '9', 'c2'],
      ['old', 'same', '3', 'c1']
    ]);
  });

  it('closing a notebook drops its state and the panel focus', () => {
    const model = new LineageModel();
    model.ingest('nb', 'c', parseLineage(bundle()));
    model.active = 'nb';
    model.closeNotebook('nb');
    expect(model.active).toBeNull();
    expect(model.cells('nb')).toEqual([]);
  });

  it('orders saved records by when they ran', () => {
    const items = [
      { record: parseLineage(bundle({ started: '2026-11-27T17:05:00Z' })), id: 'late' },
      { record: parseLineage(bundle({ started: '2026-11-27T17:01:00Z' })), id: 'early' },
      { record: parseLineage(bundle({ started: 1795799400 })), id: 'epoch' }
    ];
    expect(byStarted(items).map(i => i.id)).toEqual(['early', 'late', 'epoch']);
  });
});
