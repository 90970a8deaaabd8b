// Export benchmark (not a test; docs/exports.md): how long the merged-model and GGUF exports take and how much memory
// they hold, on a random bf16 Mistral of 120M parameters (hidden 1024, 4 layers, 8/2 heads, FFN 3584, the real
// Mistral v0.1 tokenizer; `dpo-tool make-model`) with a LoRA r 64 on q_proj and v_proj, as the notebook trains. Exports stream one tensor at
// a time, so time scales with the parameter count and memory with the largest tensor; the table says what that means
// for a 7B model (from CPU time: on a shared machine wall time mostly measures the others). Prints a table and writes
// build/bench/export-bench.json.
// Run: NODE_OPTIONS=--expose-gc npx tsx test/bench/export-bench.ts   (gc between exports, so peak RSS is each one's)
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { exportGguf } from '../../src-main/services/export/ggufExport'
import { exportMergedModel } from '../../src-main/services/export/mergedModel'
import { randomAdapter } from '../helpers/exportFixtures'
import { DPO_TOOL } from '../helpers/familyModels'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

const PARAMS_7B = 7.24e9
const c = {
  hidden_size: 1024,
  intermediate_size: 3584,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  vocab_size: 32000,
}
const params =
  2 * c.vocab_size * c.hidden_size +
  c.hidden_size +
  c.num_hidden_layers *
    (2 * c.hidden_size * c.hidden_size +
      2 * c.hidden_size * (c.hidden_size / c.num_attention_heads) * c.num_key_value_heads +
      3 * c.hidden_size * c.intermediate_size +
      2 * c.hidden_size)

// dpo-tool's random checkpoint at that shape (bf16, untied), with the real Mistral v0.1 tokenizer the GGUF needs.
const model = mkdtempSync(path.join(os.tmpdir(), 'dpo-export-bench-model-'))
execFileSync(
  DPO_TOOL,
  [
    'make-model',
    '--arch',
    'mistral',
    '--out',
    model,
    '--hidden',
    String(c.hidden_size),
    '--layers',
    String(c.num_hidden_layers),
    '--heads',
    String(c.num_attention_heads),
    '--kv-heads',
    String(c.num_key_value_heads),
    '--ffn',
    String(c.intermediate_size),
    '--vocab',
    String(c.vocab_size),
  ],
  { stdio: 'pipe' },
)
for (const f of ['tokenizer.json', 'tokenizer_config.json'])
  copyFileSync(sharedPath('tokenizers', 'mistral-v0.1', f), path.join(model, f))
const adapter = await randomAdapter(model, { targets: ['q_proj', 'v_proj'], r: 64, alpha: 16 })
const root = mkdtempSync(path.join(os.tmpdir(), 'dpo-export-bench-'))
const sizeOf = (dir: string) => readdirSync(dir).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0)

interface Row {
  export: string
  seconds: number
  cpuSeconds: number
  outputMB: number
  peakRssMB: number
  per7BMinutes: number
}
const rows: Row[] = []
async function measure(name: string, run: (out: string) => Promise<unknown>): Promise<void> {
  const out = path.join(root, name.replace(/[^a-z0-9]+/gi, '-'))
  globalThis.gc?.()
  const rss0 = process.memoryUsage().rss
  let peak = rss0
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 50)
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  await run(out)
  const cpu = process.cpuUsage(cpu0)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  const seconds = (performance.now() - t0) / 1000
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage().rss)
  rows.push({
    export: name,
    seconds,
    cpuSeconds,
    outputMB: sizeOf(out) / 1e6,
    peakRssMB: peak / 1e6,
    per7BMinutes: (cpuSeconds * PARAMS_7B) / params / 60,
  })
  rmSync(out, { recursive: true, force: true })
}

const base = { modelDir: model, adapterDir: adapter.dir }
await measure('merged, bf16 (original weights)', (outDir) =>
  exportMergedModel({ ...base, mergeBase: 'original', outDir }),
)
await measure('merged, bf16 (NF4 round trip)', (outDir) => exportMergedModel({ ...base, mergeBase: 'nf4', outDir }))
for (const type of ['F16', 'Q8_0', 'Q4_0'] as const) {
  await measure(`GGUF ${type} (no LoRA file)`, (outDir) =>
    exportGguf({ ...base, mergeBase: 'original', types: [type], lora: false, outDir }),
  )
}
await measure('GGUF F16 + Q8_0 + Q4_0 + LoRA (the default)', (outDir) =>
  exportGguf({ ...base, mergeBase: 'original', outDir }),
)
rmSync(root, { recursive: true, force: true })
rmSync(model, { recursive: true, force: true })

console.log(
  `export benchmark: ${(params / 1e6).toFixed(0)}M parameters (bf16 ${((params * 2) / 1e6).toFixed(0)} MB), LoRA r 64 on q_proj, v_proj; ${os.cpus()[0]?.model ?? ''}, ${os.cpus().length} cores`,
)
console.log('| export | wall s | CPU s | output | peak RSS | 7B at this CPU rate |')
console.log('|---|---|---|---|---|---|')
for (const r of rows)
  console.log(
    `| ${r.export} | ${r.seconds.toFixed(1)} | ${r.cpuSeconds.toFixed(1)} | ${r.outputMB.toFixed(0)} MB | ${r.peakRssMB.toFixed(0)} MB | ${r.per7BMinutes.toFixed(1)} min |`,
  )
mkdirSync(path.join(repoRoot, 'build/bench'), { recursive: true })
writeFileSync(
  path.join(repoRoot, 'build/bench/export-bench.json'),
  JSON.stringify(
    { date: new Date().toISOString(), params, cpu: os.cpus()[0]?.model, cores: os.cpus().length, rows },
    null,
    2,
  ) + '\n',
)
