export const XSS = '<img src=x onerror="window.__llmopsXss=1">';

/** A bundle as the kernel emits it (see docs/architecture.md, "Lineage"). */
export function bundle(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    record_id: 'rec-1',
    session_id: 'sess-1',
    notebook: 'demo.ipynb',
    cell_id: 'cell-1',
    execution_count: 3,
    status: 'ok',
    error_type: null,
    started: '2026-11-27T17:00:00+00:00',
    duration_s: 1.25,
    prompts: [{ name: 'summarize', version: 4, digest: 'sha256:0123456789abcdef0123' }],
    models: [{ name: 'chat', version: 2, digest: 'sha256:feedfacecafebeef1234', backend: 'vllm' }],
    runs: [{ run_id: '3f2a1b2c9d8e7f60', experiment_id: '7', kind: 'llm' }],
    pins: [
      {
        kind: 'prompt',
        name: 'summarize',
        version: 4,
        alias: 'production',
        alias_now: 4,
        digest: 'sha256:0123456789abcdef0123',
        drift: false,
        message: ''
      }
    ],
    tokens: { prompt: 31, completion: 16 },
    latency_s: 0.42,
    tables: [{ table: 'docs', version_before: 3, version_after: 4, step: 'backfill' }],
    shadow: [],
    adapter_checks: [],
    events: [],
    summary: 'lineage: prompt summarize/4 · model chat/2 · run 3f2a1b2c',
    ...overrides
  };
}
