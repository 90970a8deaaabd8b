// The studio end to end in Chromium against the web host with the real engine, on the built-in demo model and sample
// dataset that a fresh session opens by itself: see the demo notice, open a real model (stories260K from ../shared,
// when present) and come back, change support_ratio and see the pairs change, generate, train and watch the curves,
// find an answer whose stance DPO changed and its highlighted diff, export and read the JSON back, find the run in
// the history, inspect the run's pairs and their tokens, cancel a support_ratio 0.9 run and resume it from the history,
// compare the two (answers, then pairs and tokens side by side), run a support_ratio sweep and follow it to a run's
// pairs, survive an engine crash. Screenshots of each main view land in test-results/screenshots.
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serveStudio, type RunningWebHost } from '../../src-main/webhost/app'
import { classifyStance, type StanceRow } from '../../scripts/demo-model/stance'
import { repoRoot, sharedPath } from '../helpers/sharedPath'
import type { AnswerTokensRow, PairInsightRow, PairTokensRow, SweepFile } from '../../src-main/services/insights/insightTypes'
import { tokenLabel } from '../../src-renderer/src/lib/tokenHeat'
import { readJsonl } from '../helpers/insightFiles'
import { launchChromium, screenshot } from './browser'

const DEMO_MODEL = realpathSync(path.join(repoRoot, 'resources/demo-model'))
const SAMPLE = path.join(repoRoot, 'resources/sample-dataset/zh')
const SAMPLE_ROWS = JSON.parse(readFileSync(path.join(SAMPLE, 'labelled_data.json'), 'utf8')) as StanceRow[]
/** A real (non-demo) model for the switch back to the notebook's values; optional. */
const REAL_MODEL = sharedPath('models/stories260K')
const hasRealModel = existsSync(path.join(REAL_MODEL, 'config.json'))
/** The app shows folders with symlinks resolved (its path rules work on real paths); ../shared may be a link. */
const REAL_MODEL_SHOWN = hasRealModel ? realpathSync(REAL_MODEL) : REAL_MODEL
const hasTraining = existsSync(path.join(repoRoot, 'src-main/services/training/notebookRun.ts'))

let host: RunningWebHost
let context: BrowserContext
let page: Page
let dataDir: string

const tid = (id: string) => page.getByTestId(id)
/** How the app writes a metric (lib/format.ts metric). */
const shown = (v: number | null | undefined) => (v == null ? '—' : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4))
/** Closes the notices (toasts) so they do not cover a screenshot. */
async function dismissNotices(): Promise<void> {
  for (const b of await page.getByRole('button', { name: 'Dismiss' }).all()) await b.click().catch(() => undefined)
}
/** The run directories under the app's runs folder, oldest first. */
const runDirs = () => readdirSync(path.join(dataDir, 'runs')).sort().map((r) => path.join(dataDir, 'runs', r))
async function nav(view: string): Promise<void> {
  await tid(`nav-${view}`).click()
  await tid(`${view === 'run' ? 'run' : view}-view`).waitFor()
}
async function openPath(field: string, value: string): Promise<void> {
  const f = tid(field)
  await f.getByTestId('path-input').fill(value)
  await f.getByTestId('path-open').click()
}

beforeAll(async () => {
  if (!existsSync(path.join(repoRoot, 'out/renderer/index.html'))) throw new Error('build the renderer first: npx electron-vite build (npm run test:e2e does)')
  dataDir = mkdtempSync(path.join(tmpdir(), 'dpo-e2e-data-'))
  host = await serveStudio({ dataDir, roots: existsSync(sharedPath()) ? [sharedPath()] : [], port: 0 })
  ;({ context, page } = await launchChromium())
  page.on('pageerror', (e) => console.error('[page error]', e.message))
})

afterAll(async () => {
  await context?.close()
  await host?.stop()
})

describe('DPO Studio in Chromium', () => {
  it('refuses the page without the token and opens with it', async () => {
    const bare = await fetch(`http://127.0.0.1:${host.port}/`)
    expect(bare.status).toBe(401)
    await page.goto(host.url)
    await tid('models-view').waitFor()
    // The token leaves the address bar once the page has it.
    expect(page.url()).not.toContain('token=')
    await expect.poll(() => tid('engine-chip').textContent(), { timeout: 30_000 }).toMatch(/CPU|GPU|·/)
  })

  it('starts on the built-in demo model and says how to open a real one', async () => {
    await tid('model-summary').waitFor({ timeout: 30_000 })
    await expect.poll(() => tid('model-summary').textContent()).toContain('LlamaForCausalLM')
    expect(await tid('model-summary').textContent()).toContain(DEMO_MODEL)
    const notice = tid('demo-notice')
    await notice.waitFor()
    const text = (await notice.textContent()) ?? ''
    expect(text).toContain('Demo model in use')
    expect(text).toContain('built-in demo model')
    expect(text).toContain('Hugging Face model folder')
    expect(text).toContain('Hugging Face cache')
    expect(await tid('demo-badge-models').textContent()).toBe('Demo')
    // The sample dataset is open too, without a visit to the dataset view.
    await expect.poll(async () => (await tid('nav-dataset').textContent()) ?? '').toContain('60 rows · 60 pairs')
    await expect.poll(async () => (await tid('nav-params').textContent()) ?? '').toContain('Demo model preset')
  })

  it.runIf(hasRealModel)('a real model hides the notice and brings the notebook values; one click goes back to the demo', async () => {
    await openPath('model-path', REAL_MODEL)
    await expect.poll(async () => (await tid('model-summary').textContent()) ?? '').toContain(REAL_MODEL_SHOWN)
    await expect.poll(() => tid('demo-notice').count()).toBe(0)
    expect(await tid('demo-badge-models').count()).toBe(0)
    await expect.poll(async () => (await tid('nav-params').textContent()) ?? '').toContain('Notebook defaults')
    await tid('use-demo-model').click()
    await tid('demo-notice').waitFor()
    await expect.poll(async () => (await tid('nav-params').textContent()) ?? '').toContain('Demo model preset')
  })

  it('loads the demo model on the engine', async () => {
    await tid('model-load').click()
    await tid('model-loaded').waitFor({ timeout: 60_000 })
    await screenshot(page, 'models')
  })

  it('has the sample dataset open; support_ratio changes the pairs live', async () => {
    await nav('dataset')
    await tid('dataset-table').waitFor()
    await tid('sample-badge').waitFor()
    await expect.poll(() => tid('pairs-total').textContent()).toBe('60')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('6')
    // A broken file: the error names the row and the field.
    const bad = path.join(dataDir, 'bad.json')
    writeFileSync(bad, JSON.stringify([{ id: 1, prompt: 'p', support: 's', oppose: 'o' }, { id: 2, prompt: 'p2', support: 's2' }]))
    await openPath('dataset-path', bad)
    await tid('dataset-error').waitFor()
    expect(await tid('dataset-error').textContent()).toMatch(/row 2.*field.*oppose/s)
    // Web mode's folder browser: only the host's roots (the bundled resources among them); choosing the sample
    // folder opens it again.
    await tid('dataset-path').getByTestId('path-input').fill(SAMPLE)
    await tid('dataset-path').getByTestId('path-browse').click()
    await tid('files-browser').waitFor()
    await tid('fs-entry-labelled_data.json').waitFor()
    expect(await tid('files-browser').textContent()).toContain('DPO_STUDIO_ROOTS')
    await tid('files-choose').click()
    await tid('dataset-table').waitFor()
    await tid('sample-badge').waitFor()
    await expect.poll(() => tid('dataset-row').count()).toBe(10)
    await tid('support-ratio-input').fill('0.5')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('30')
    await expect.poll(() => tid('pairs-oppose').textContent()).toBe('30')
    await tid('data-size-input').fill('20')
    await expect.poll(() => tid('pairs-total').textContent()).toBe('20')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('10')
    await tid('dataset-search').fill('空氣')
    await expect.poll(async () => (await tid('dataset-count').textContent()) ?? '').toMatch(/^[1-9]\d* of 60 rows$/)
    await tid('dataset-search').fill('')
    await expect.poll(() => tid('test-prompts').textContent()).toContain('市中心禁車是否能讓街道更乾淨')
    // Back to the demo's values for training: all 60 pairs, support_ratio 0.1 (54 prefer "oppose").
    await tid('data-size-input').fill('60')
    await tid('support-ratio-input').fill('0.1')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('6')
    await expect.poll(() => tid('pairs-oppose').textContent()).toBe('54')
    await screenshot(page, 'dataset')
  })

  it('generates the parameter form from the schema, starting from the Demo preset', async () => {
    await nav('params')
    const form = tid('param-form')
    await form.waitFor()
    expect(await form.textContent()).toContain('learning_rate')
    await tid('params-demo-note').waitFor()
    expect(await tid('preset-demo').getAttribute('class')).toContain('on')
    const num = (key: string) => tid(`param-${key}`).locator('input[type=number]')
    expect(await num('dataSize').inputValue()).toBe('60')
    expect(await num('epochs').inputValue()).toBe('4')
    expect(Number(await num('learningRate').inputValue())).toBe(0.002)
    expect(await num('maxNewTokens').inputValue()).toBe('48')
    const beta = num('beta')
    await beta.fill('0')
    await expect.poll(() => tid('param-beta').textContent()).toContain('Must be greater than 0')
    await beta.fill('0.1')
    await expect.poll(async () => tid('params-invalid').count()).toBe(0)
    expect(await tid('preset-demo').getAttribute('class')).toContain('on')
    await page.evaluate(() => document.querySelector('.content')?.scrollTo(0, 0))
    await screenshot(page, 'params')
  })

  it('streams the original answers before training', async () => {
    await nav('responses')
    await tid('generate-original').click()
    await expect.poll(async () => ((await tid('resp-original').locator('.answer').textContent().catch(() => '')) ?? '').length, { timeout: 60_000 }).toBeGreaterThan(5)
    await expect.poll(() => tid('streaming-badge').count(), { timeout: 60_000 }).toBe(0)
    await expect.poll(() => tid('question-9').locator('.d.has').count()).toBe(1)
    // With the sample dataset open, each answer says which side it takes.
    await expect.poll(async () => (await tid('resp-original-stance').textContent().catch(() => '')) ?? '').toMatch(/^(support|oppose)$/)
    await screenshot(page, 'responses-original')
  })

  it.runIf(hasTraining)('trains with live curves, then shows trained answers and the diff', async () => {
    await nav('run')
    await tid('train-start').click()
    await tid('train-cancel').waitFor({ timeout: 10_000 }).catch(() => undefined)
    // Curves update at each logging step: the loss chart's step counter moves while the run goes on.
    await expect.poll(async () => (await tid('run-loss').textContent()) ?? '—', { timeout: 120_000 }).not.toBe('—')
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 180_000, interval: 500 }).toContain('completed')
    const loss = Number(await tid('run-loss').textContent())
    expect(loss).toBeGreaterThan(0)
    expect(await tid('run-memory').textContent()).toMatch(/\d.*[KMG]i?B/)
    expect(await tid('loss-chart').locator('canvas').count()).toBeGreaterThan(0)
    expect(await tid('rewards-chart').locator('canvas').count()).toBeGreaterThan(0)
    await screenshot(page, 'run')

    await nav('responses')
    await tid('diff-view').waitFor({ timeout: 10_000 })
    await expect.poll(async () => ((await tid('resp-trained').textContent()) ?? '').length).toBeGreaterThan(20)
    await tid('question-0').click()
    await tid('resp-next').click()
    await expect.poll(() => tid('resp-prompt').textContent()).toContain('市中心禁車是否會影響商店街的生意')
    await screenshot(page, 'responses')
  })

  it.runIf(hasTraining)('shows an answer whose stance DPO changed, with its diff highlighted', async () => {
    // Read every question's two answers from the page and classify them by their nearest sample answer.
    const answers: Array<{ original: string; trained: string }> = []
    for (let i = 0; i < 10; i++) {
      await tid(`question-${i}`).click()
      await expect.poll(() => tid(`question-${i}`).getAttribute('class')).toContain('on')
      answers.push({
        original: (await tid('resp-original').locator('.answer').textContent()) ?? '',
        trained: (await tid('resp-trained').locator('.answer').textContent()) ?? '',
      })
    }
    const stances = answers.map((a) => ({ original: classifyStance(a.original, SAMPLE_ROWS), trained: classifyStance(a.trained, SAMPLE_ROWS) }))
    const opposeAfter = stances.filter((s) => s.trained === 'oppose').length
    const opposeBefore = stances.filter((s) => s.original === 'oppose').length
    // support_ratio 0.1: most pairs prefer "oppose", and the trained answers lean that way.
    expect(opposeAfter, JSON.stringify(answers)).toBeGreaterThanOrEqual(7)
    expect(opposeAfter).toBeGreaterThanOrEqual(opposeBefore)
    const changed = stances.findIndex((s) => s.original === 'support' && s.trained === 'oppose')
    const index = changed >= 0 ? changed : stances.findIndex((s) => s.original !== s.trained)
    expect(index, `no answer changed stance: ${JSON.stringify(answers)}`).toBeGreaterThanOrEqual(0)

    await tid(`question-${index}`).click()
    await expect.poll(async () => (await tid('resp-trained').locator('.answer').textContent()) ?? '').toBe(answers[index]!.trained)
    const diff = tid('diff-view')
    await expect.poll(() => diff.locator('.removed').count()).toBeGreaterThan(0)
    expect(await diff.locator('.added').count()).toBeGreaterThan(0)
    expect(await tid('diff-removed').textContent()).toMatch(/^−[1-9]\d* words$/)
    expect(await tid('diff-added').textContent()).toMatch(/^\+[1-9]\d* words$/)
    // The highlighted parts really are coloured (removed red, added green).
    const bg = (sel: string) => diff.locator(sel).first().evaluate((el) => getComputedStyle(el).backgroundColor)
    expect(await bg('.removed')).toBe('rgb(253, 228, 225)')
    expect(await bg('.added')).toBe('rgb(217, 243, 232)')
    expect(await tid('resp-original-stance').textContent()).toBe(stances[index]!.original)
    expect(await tid('resp-trained-stance').textContent()).toBe(stances[index]!.trained)
    expect(await tid('stance-moved').textContent()).toContain(`from ${stances[index]!.original} to ${stances[index]!.trained}`)
    await screenshot(page, 'demo-stance-change')
  })

  it.runIf(hasTraining)('exports the comparison JSON in the notebook shape and reads it back', async () => {
    await nav('export')
    await tid('export-button').waitFor()
    await expect.poll(() => tid('export-run').inputValue()).not.toBe('')
    const target = path.join(dataDir, 'exports', 'e2e', 'comparison.json')
    const field = tid('export-comparison-path')
    await field.getByTestId('path-input').fill(target)
    await tid('export-button').click()
    await tid('export-results').waitFor()
    const rows = JSON.parse(readFileSync(target, 'utf8')) as Array<Record<string, unknown>>
    expect(rows).toHaveLength(10)
    expect(Object.keys(rows[0]!).sort()).toEqual(['id', 'prompt', 'response_from_original_model', 'response_from_trained_model'])
    expect(rows[0]!.prompt).toBe('市中心禁車是否能讓街道更乾淨？')
    const meta = JSON.parse(readFileSync(target.replace(/\.json$/, '.meta.json'), 'utf8')) as Record<string, unknown>
    expect(meta.params).toBeTruthy()
    const adapterDir = path.join(dataDir, 'exports', 'e2e', 'adapter')
    await tid('export-adapter-path').getByTestId('path-input').fill(adapterDir)
    await tid('export-adapter-button').click()
    await expect.poll(() => existsSync(path.join(adapterDir, 'adapter_config.json')), { timeout: 10_000 }).toBe(true)
    expect(existsSync(path.join(adapterDir, 'adapter_model.safetensors'))).toBe(true)
    await screenshot(page, 'export')
  })

  it.runIf(hasTraining)('asks before replacing an earlier export, and never writes over a file that is not one', async () => {
    await nav('export')
    const target = path.join(dataDir, 'exports', 'e2e', 'comparison.json')
    const field = tid('export-comparison-path').getByTestId('path-input')
    await field.fill(target)
    const before = statSync(target).mtimeMs
    await tid('export-button').click()
    await tid('export-overwrite').waitFor()
    expect(await tid('export-overwrite').textContent()).toContain(target)
    await tid('export-overwrite-no').click()
    await tid('export-overwrite').waitFor({ state: 'detached' })
    expect(statSync(target).mtimeMs).toBe(before)
    await tid('export-button').click()
    await tid('export-overwrite-yes').click()
    await tid('export-overwrite').waitFor({ state: 'detached' })
    await expect.poll(() => statSync(target).mtimeMs).toBeGreaterThan(before)

    // A file of the user's (here: a copy of a dataset) is never overwritten, with or without asking.
    const dataset = path.join(dataDir, 'exports', 'e2e', 'labelled_data.json')
    writeFileSync(dataset, readFileSync(path.join(SAMPLE, 'labelled_data.json')))
    await field.fill(dataset)
    await tid('export-button').click()
    await expect.poll(() => tid('export-error').textContent()).toContain('is not an earlier DPO Studio export')
    expect(await tid('export-overwrite').count()).toBe(0)
    expect(readFileSync(dataset, 'utf8')).toBe(readFileSync(path.join(SAMPLE, 'labelled_data.json'), 'utf8'))
    await screenshot(page, 'export-refused')
  })

  it.runIf(hasTraining)('lists the run in the history and reopens it', async () => {
    await nav('history')
    await tid('run-history').waitFor()
    await expect.poll(() => tid('history-row').count()).toBe(1)
    await screenshot(page, 'history')
    await tid('run-history').getByRole('button', { name: 'Open' }).first().click()
    await tid('run-view').waitFor()
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '').toContain('past run')
  })

  it.runIf(hasTraining)('inspects the run: pairs.jsonl in a sortable, filterable table, and a pair token by token', async () => {
    await nav('pairs')
    const [dir] = runDirs()
    const pairs = readJsonl<PairInsightRow>(path.join(dir!, 'pairs.jsonl'))
    const tokens = readJsonl<PairTokensRow>(path.join(dir!, 'pairs_tokens.jsonl'))
    await expect.poll(() => tid('pairs-count').textContent(), { timeout: 15_000 }).toBe('60 of 60 pairs')
    // Largest margin gain first: the top row is the file's largest margin.
    const best = [...pairs].sort((a, b) => b.margin! - a.margin!)[0]!
    const first = tid('pairs-table').locator('tbody tr').first()
    expect(await first.getAttribute('data-testid')).toBe(`pair-row-${best.index}`)
    expect(await first.getByTestId('pair-margin').textContent()).toBe(shown(best.margin))
    const flipped = pairs.filter((p) => !p.correct_before && p.correct_after).length
    const stillWrong = pairs.filter((p) => !p.correct_after).length
    expect(await tid('summary-flipped').textContent()).toBe(String(flipped))
    expect(await tid('summary-still-wrong').textContent()).toBe(String(stillWrong))
    await tid('pairs-filter').selectOption('still-wrong')
    await expect.poll(() => tid('pairs-count').textContent()).toBe(`${stillWrong} of 60 pairs`)
    await tid('pairs-filter').selectOption('flipped')
    await expect.poll(() => tid('pairs-count').textContent()).toBe(`${flipped} of 60 pairs`)
    await tid('pairs-filter').selectOption('all')
    await tid('pairs-sort-index').click()
    await expect.poll(() => first.getAttribute('data-testid')).toBe('pair-row-0')
    // Keyboard click-through: focus the first row, Enter opens it.
    await tid('pair-row-0').focus()
    await page.keyboard.press('Enter')
    const heat = tid('heat-a-chosen')
    await heat.waitFor()
    expect(await tid('pair-detail-margin').textContent()).toBe(shown(pairs[0]!.margin))
    // The chosen answer per token, as the tokenizer split it (one Chinese character each here), with each token's
    // change in log-prob from the file.
    expect(await heat.getByTestId('heat-token').allTextContents()).toEqual(tokens[0]!.chosen.text.map(tokenLabel))
    const deltas = await heat.getByTestId('heat-token').evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.delta)))
    expect(deltas).toEqual(tokens[0]!.chosen.trained.map((t, k) => t! - tokens[0]!.chosen.ref[k]!))
    expect(await tid('heat-a-rejected').getByTestId('heat-token').count()).toBe(tokens[0]!.rejected.ids.length)
    await page.keyboard.press('ArrowDown')
    await expect.poll(() => tid('pair-row-1').getAttribute('aria-selected')).toBe('true')
    await expect.poll(async () => (await tid('pair-prompt').textContent()) ?? '').toBe(pairs[1]!.prompt as string)
    await tid('pair-detail').scrollIntoViewIfNeeded()
    await dismissNotices()
    await screenshot(page, 'pairs')

    // The test answers, token by token, before and after.
    const answers = readJsonl<AnswerTokensRow>(path.join(dir!, 'responses_tokens.jsonl'))
    await tid('pairs-tab-answers').click()
    await tid('answer-1').click()
    await tid('answer-heat-a-trained').waitFor()
    expect(await tid('answer-heat-a-trained').getByTestId('heat-token').allTextContents()).toEqual(answers[1]!.trained.text.map(tokenLabel))
    expect(answers[1]!.trained.answer).toBe(JSON.parse(readFileSync(path.join(dir!, 'responses_trained.json'), 'utf8'))[1].response)
    await dismissNotices()
    await screenshot(page, 'pairs-answers')
    await tid('pairs-tab-pairs').click()
  })

  it.runIf(hasTraining)('cancels a second run during training and resumes it from the history', async () => {
    await nav('dataset')
    await tid('support-ratio-input').fill('0.9')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('54')
    await nav('run')
    await tid('train-start').click()
    // Cancel once a training step has been logged; the run keeps a checkpoint (docs/resume.md).
    await expect.poll(async () => (await tid('run-loss').textContent()) ?? '—', { timeout: 120_000, interval: 100 }).not.toBe('—')
    await tid('train-cancel').click()
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 60_000, interval: 250 }).toContain('cancelled')
    await tid('train-resume').waitFor()
    await nav('history')
    await expect.poll(() => tid('history-row').count()).toBe(2)
    const runsDir = path.join(dataDir, 'runs')
    const newest = readdirSync(runsDir).sort().at(-1)!
    expect(existsSync(path.join(runsDir, newest, 'checkpoint.safetensors'))).toBe(true)
    await screenshot(page, 'history-resumable')
    await tid(`history-resume-${newest}`).click()
    await tid('run-view').waitFor()
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 180_000, interval: 500 }).toMatch(/^completed/)
    const status = JSON.parse(readFileSync(path.join(runsDir, newest, 'run_status.json'), 'utf8')) as Record<string, unknown>
    expect(status).toMatchObject({ status: 'completed' })
    expect(status.resumedAt).toBeTruthy()
    expect(existsSync(path.join(runsDir, newest, 'comparison.json'))).toBe(true)
  })

  it.runIf(hasTraining)('compares two runs side by side', async () => {
    await nav('history')
    await expect.poll(() => tid('history-row').count()).toBe(2)
    for (const box of await tid('run-history').locator('input[type=checkbox]').all()) await box.check()
    await tid('history-compare').click()
    await tid('history-compare-view').waitFor()
    await tid('history-compare-view').getByTestId('diff-view').waitFor()
    await screenshot(page, 'history-compare')
    // support_ratio 0.9 pulled the same model the other way: most answers of the newer run take the support side.
    const runsDir = path.join(dataDir, 'runs')
    const newest = readdirSync(runsDir).sort().at(-1)!
    const cmp = JSON.parse(readFileSync(path.join(runsDir, newest, 'comparison.json'), 'utf8')) as Array<{ response_from_trained_model: string }>
    const support = cmp.filter((r) => classifyStance(r.response_from_trained_model, SAMPLE_ROWS) === 'support').length
    expect(support).toBeGreaterThanOrEqual(7)
  })

  it.runIf(hasTraining)('shows the pairs and tokens of two runs side by side', async () => {
    await nav('pairs')
    const [older, newer] = runDirs()
    const olderPairs = readJsonl<PairInsightRow>(path.join(older!, 'pairs.jsonl'))
    const newerPairs = readJsonl<PairInsightRow>(path.join(newer!, 'pairs.jsonl'))
    await tid('pairs-run').selectOption(path.basename(newer!))
    await expect.poll(async () => (await tid('pairs-summary-a').textContent()) ?? '').toContain(path.basename(newer!))
    await tid('pairs-compare').selectOption(path.basename(older!))
    await tid('pairs-summary-b').waitFor()
    await tid('pairs-sort-index').click()
    await tid('pair-row-0').click()
    await tid('heat-b-chosen').waitFor()
    // Pair 1 prefers support in both runs (support_ratio 0.9 and 0.1 both start with support rows).
    expect(await tid('pair-row-0').getByTestId('pair-margin').textContent()).toBe(shown(newerPairs[0]!.margin))
    expect(await tid('pair-row-0').getByTestId('pair-margin-b').textContent()).toBe(shown(olderPairs[0]!.margin))
    expect(await tid('pair-run-b').getByTestId('pair-detail-margin').textContent()).toBe(shown(olderPairs[0]!.margin))
    expect(await tid('heat-b-chosen').getByTestId('heat-token').count()).toBe(await tid('heat-a-chosen').getByTestId('heat-token').count())
    // Sorting by the compared run's margin puts its largest first.
    await tid('pairs-sort-marginB').click()
    const bestB = [...olderPairs].sort((a, b) => b.margin! - a.margin!)[0]!
    await expect.poll(() => tid('pairs-table').locator('tbody tr').first().getAttribute('data-testid')).toBe(`pair-row-${bestB.index}`)
    await tid('pair-detail').scrollIntoViewIfNeeded()
    await dismissNotices()
    await screenshot(page, 'pairs-compare')
    await tid('pairs-compare').selectOption('')
  })

  it.runIf(hasTraining)('runs a support_ratio sweep, charts the stance against the ratio, and opens a run\'s pairs', { timeout: 400_000 }, async () => {
    await nav('sweep')
    await tid('sweep-ratios').fill('0, 1')
    await tid('sweep-start').click()
    await tid('sweep-progress').waitFor({ timeout: 30_000 })
    await expect.poll(async () => (await tid('sweep-status').textContent().catch(() => '')) ?? '', { timeout: 360_000, interval: 1000 }).toBe('completed')
    const sweepsDir = path.join(dataDir, 'sweeps')
    const [id] = readdirSync(sweepsDir)
    const sweep = JSON.parse(readFileSync(path.join(sweepsDir, id!, 'sweep.json'), 'utf8')) as SweepFile
    expect(sweep.runs.map((r) => [r.support_ratio, r.status])).toEqual([[0, 'completed'], [1, 'completed']])
    for (const [i, r] of sweep.runs.entries()) {
      expect(await tid(`sweep-row-${i}`).getByTestId('sweep-margin').textContent()).toBe(shown(r.mean_margin_support))
      expect(await tid(`sweep-row-${i}`).getByTestId('sweep-stance').textContent()).toBe(`${r.stance!.support} / ${r.stance!.oppose}`)
    }
    expect(sweep.runs[1]!.stance!.share_support).toBeGreaterThan(sweep.runs[0]!.stance!.share_support)
    expect(sweep.runs[1]!.mean_margin_support!).toBeGreaterThan(sweep.runs[0]!.mean_margin_support!)
    expect(await tid('sweep-chart').locator('canvas').count()).toBeGreaterThan(0)
    await dismissNotices()
    await screenshot(page, 'sweep')
    // One click to the support_ratio 1 run's pair inspector: every pair prefers support.
    await tid('sweep-pairs-1').click()
    await tid('pairs-view').waitFor()
    await expect.poll(() => tid('pairs-count').textContent()).toBe('60 of 60 pairs')
    expect(await tid('pairs-run').inputValue()).toBe(path.join(sweepsDir, id!, 'ratio-1'))
    expect(await tid('pairs-table').locator('.badge.oppose').count()).toBe(0)
  })

  it('reports an engine crash and restarts the engine', async () => {
    const pid = host.engine.status.pid
    expect(pid).toBeGreaterThan(0)
    process.kill(pid!, 'SIGKILL')
    await tid('host-banner').waitFor({ timeout: 10_000 })
    expect(await tid('host-banner').textContent()).toMatch(/SIGKILL|out of memory/)
    await screenshot(page, 'engine-crash')
    await expect.poll(() => host.engine.status.state, { timeout: 30_000 }).toBe('ready')
    await expect.poll(() => tid('host-banner').count(), { timeout: 15_000 }).toBe(0)
  })
})
