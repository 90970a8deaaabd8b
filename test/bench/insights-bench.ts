// Pair inspector benchmark (not a test; docs/insights.md): what the end-of-training pass adds to a run. For the demo
// model (60 pairs) and stories260K on the HW6 data (50 pairs), on the CPU: the reference pass a run already makes
// (for scale), the pass with the adapter plus writing pairs.jsonl / pairs_tokens.jsonl, the test answers' token
// pass, and the files' sizes. Prints a table and writes build/bench/insights-bench.json.
// Run: npx tsx test/bench/insights-bench.ts
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadPreferenceData, preferencePairs } from '../../src-main/services/data/preferenceFile'
import { openModel } from '../../src-main/services/session/modelSession'
import { writeAnswerTokens } from '../../src-main/services/insights/answerTokens'
import { ANSWER_TOKENS_FILE, PAIRS_FILE, PAIRS_TOKENS_FILE } from '../../src-shared/insights/insightTypes'
import { writePairInsights } from '../../src-main/services/insights/pairInsights'
import { scorePairsBatched } from '../../src-main/services/insights/scoreBatched'
import { resolveTrainParams } from '../../src-shared/params/trainParams'
import { tokenizeTrainingPair } from '../../src-main/services/training/tokenizePair'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

interface Case {
  name: string
  model: string
  data: string
  prompts: string
  dataSize: number
}
const cases: Case[] = [
  {
    name: 'demo model, sample dataset',
    model: path.join(repoRoot, 'resources/demo-model'),
    data: path.join(repoRoot, 'resources/sample-dataset/zh'),
    prompts: path.join(repoRoot, 'resources/sample-dataset/zh/test_prompt.json'),
    dataSize: 60,
  },
  {
    name: 'stories260K, HW6 data',
    model: sharedPath('models/stories260K'),
    data: sharedPath('datasets/genai-hw6'),
    prompts: sharedPath('datasets/genai-hw6/test_prompt.json'),
    dataSize: 50,
  },
]

const seconds = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t0 = performance.now()
  const v = await f()
  return [v, (performance.now() - t0) / 1000]
}

const results = []
for (const c of cases) {
  const params = resolveTrainParams({ dataSize: c.dataSize })
  const pairs = preferencePairs(await loadPreferenceData(c.data), { dataSize: c.dataSize, supportRatio: 0.5 })
  const session = await openModel(c.model, { quant: 'nf4', backend: 'cpu' })
  const tok = session.tokenizer
  const padId = tok.padId ?? tok.eosId ?? 0
  const seqs = pairs.map((p) => {
    const t = tokenizeTrainingPair(tok, p, params)
    return {
      chosen: { ids: t.chosen.ids, labels: t.chosen.labels },
      rejected: { ids: t.rejected.ids, labels: t.rejected.labels },
    }
  })
  const tokens = seqs.reduce((a, s) => a + s.chosen.ids.length + s.rejected.ids.length, 0)
  session.native.attachLora({ targets: ['q_proj', 'v_proj'], r: 64, alpha: 16, dropout: 0, seed: 42 })
  const [ref, refS] = await seconds(() => scorePairsBatched(session.native, seqs, padId, false))
  const refs = new Map(
    ref.map((r, i) => [
      i,
      {
        chosen: r.chosen.logp,
        rejected: r.rejected.logp,
        chosenTokens: r.chosen.tokenLogps,
        rejectedTokens: r.rejected.tokenLogps,
      },
    ]),
  )
  const out = mkdtempSync(path.join(os.tmpdir(), 'dpo-insights-bench-'))
  const schedule = {
    numPairs: pairs.length,
    batchSize: 1,
    gradAccum: 8,
    epochs: 1,
    warmupRatio: 0.1,
    learningRate: 2e-4,
    seed: 42,
  }
  const [, pairsS] = await seconds(() =>
    writePairInsights(session, { outDir: out, pairs, sequences: seqs, refs, params, schedule, padId }),
  )
  const prompts = JSON.parse(readFileSync(c.prompts, 'utf8')) as Array<{ id: number; prompt: string }>
  const answers = prompts.map((p, i) => ({ id: p.id, prompt: p.prompt, response: pairs[i % pairs.length]!.chosen }))
  const [, answersS] = await seconds(() => writeAnswerTokens(session, out, answers, answers, params, padId))
  session.dispose()
  const size = (f: string) => statSync(path.join(out, f)).size
  results.push({
    name: c.name,
    pairs: pairs.length,
    tokens,
    reference_s: refS,
    pairs_pass_s: pairsS,
    answers: prompts.length,
    answers_pass_s: answersS,
    pairs_bytes: size(PAIRS_FILE),
    pairs_tokens_bytes: size(PAIRS_TOKENS_FILE),
    answer_tokens_bytes: size(ANSWER_TOKENS_FILE),
  })
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
console.log(`\nCPU: ${cpu}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}\n`)
console.log(
  '| workload | pairs (tokens) | reference pass s | trained pass + files s | test answers (10) s | pairs.jsonl | pairs_tokens.jsonl | responses_tokens.jsonl |',
)
console.log('|---|---|---|---|---|---|---|---|')
const kb = (b: number) => `${(b / 1024).toFixed(0)} KiB`
for (const r of results) {
  console.log(
    `| ${r.name} | ${r.pairs} (${r.tokens}) | ${r.reference_s.toFixed(2)} | ${r.pairs_pass_s.toFixed(2)} | ${r.answers_pass_s.toFixed(2)} | ${kb(r.pairs_bytes)} | ${kb(r.pairs_tokens_bytes)} | ${kb(r.answer_tokens_bytes)} |`,
  )
}
const dir = path.join(repoRoot, 'build/bench')
mkdirSync(dir, { recursive: true })
writeFileSync(
  path.join(dir, 'insights-bench.json'),
  JSON.stringify({ cpu, cores: os.cpus().length, date: new Date().toISOString(), results }, null, 2),
)
