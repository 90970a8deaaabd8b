// The studio end to end in Chromium against the web host with the real engine on stories260K and the HW6 data:
// open a dataset, change support_ratio and see the pairs change, generate, train and watch the curves, open the
// diff, export and read the JSON back, find the run in the history, survive an engine crash. Screenshots of each
// main view land in test-results/screenshots.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serveStudio, type RunningWebHost } from '../../src-main/webhost/app'
import { repoRoot, sharedPath } from '../helpers/sharedPath'
import { launchChromium, screenshot } from './browser'

const MODEL = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const hasTraining = existsSync(path.join(repoRoot, 'src-main/services/training/notebookRun.ts'))

let host: RunningWebHost
let context: BrowserContext
let page: Page
let dataDir: string

const tid = (id: string) => page.getByTestId(id)
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
  host = await serveStudio({ dataDir, roots: [sharedPath()], port: 0 })
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

  it('opens a model folder and shows what it is', async () => {
    await openPath('model-path', MODEL)
    await tid('model-summary').waitFor()
    await expect.poll(() => tid('model-summary').textContent()).toContain('LlamaForCausalLM')
    await tid('model-load').click()
    await tid('model-loaded').waitFor({ timeout: 60_000 })
    await screenshot(page, 'models')
  })

  it('opens the HW6 dataset; support_ratio changes the pairs live', async () => {
    await nav('dataset')
    // A broken file: the error names the row and the field.
    const bad = path.join(dataDir, 'bad.json')
    writeFileSync(bad, JSON.stringify([{ id: 1, prompt: 'p', support: 's', oppose: 'o' }, { id: 2, prompt: 'p2', support: 's2' }]))
    await openPath('dataset-path', bad)
    await tid('dataset-error').waitFor()
    expect(await tid('dataset-error').textContent()).toMatch(/row 2.*field.*oppose/s)
    // Web mode's folder browser: only the host's roots, listing the HW6 folder; choosing it opens the dataset.
    await tid('dataset-path').getByTestId('path-input').fill(HW6)
    await tid('dataset-path').getByTestId('path-browse').click()
    await tid('files-browser').waitFor()
    await tid('fs-entry-labelled_data.json').waitFor()
    expect(await tid('files-browser').textContent()).toContain('DPO_STUDIO_ROOTS')
    await tid('files-choose').click()
    await tid('dataset-table').waitFor()
    await expect.poll(() => tid('dataset-row').count()).toBe(10)
    await expect.poll(() => tid('pairs-total').textContent()).toBe('50')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('5')
    await tid('support-ratio-input').fill('0.5')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('25')
    await expect.poll(() => tid('pairs-oppose').textContent()).toBe('25')
    await tid('data-size-input').fill('20')
    await expect.poll(() => tid('pairs-total').textContent()).toBe('20')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('10')
    await tid('dataset-search').fill('真人化')
    await expect.poll(async () => (await tid('dataset-count').textContent()) ?? '').toMatch(/^\d+ of 50 rows$/)
    await tid('dataset-search').fill('')
    await expect.poll(() => tid('test-prompts').textContent()).toContain('真人化是否能改善日本漫畫的全球可及性')
    await screenshot(page, 'dataset')
  })

  it('generates the parameter form from the schema, with validation messages', async () => {
    await nav('params')
    const form = tid('param-form')
    await form.waitFor()
    expect(await form.textContent()).toContain('learning_rate')
    const beta = tid('param-beta').locator('input[type=number]')
    await beta.fill('0')
    await expect.poll(() => tid('param-beta').textContent()).toContain('Must be greater than 0')
    await beta.fill('0.1')
    await expect.poll(async () => tid('params-invalid').count()).toBe(0)
    // A short run for the tiny model: 20 pairs, 2 per step, short answers.
    await tid('param-gradAccum').locator('input[type=number]').fill('2')
    await tid('param-maxNewTokens').locator('input[type=number]').fill('24')
    // A high rate so the tiny model's answers visibly change (the diff has something to show).
    await tid('param-learningRate').locator('input[type=number]').fill('0.01')
    await page.evaluate(() => document.querySelector('.content')?.scrollTo(0, 0))
    await screenshot(page, 'params')
  })

  it('streams the original answers before training', async () => {
    await nav('responses')
    await tid('generate-original').click()
    await expect.poll(async () => ((await tid('resp-original').textContent()) ?? '').length, { timeout: 60_000 }).toBeGreaterThan(40)
    await expect.poll(() => tid('streaming-badge').count(), { timeout: 60_000 }).toBe(0)
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
    expect(await tid('loss-chart').locator('canvas').count()).toBeGreaterThan(0)
    expect(await tid('rewards-chart').locator('canvas').count()).toBeGreaterThan(0)
    await screenshot(page, 'run')

    await nav('responses')
    await tid('diff-view').waitFor({ timeout: 10_000 })
    await expect.poll(async () => ((await tid('resp-trained').textContent()) ?? '').length).toBeGreaterThan(20)
    await tid('resp-next').click()
    await expect.poll(() => tid('resp-prompt').textContent()).toContain('真人化如何影響年輕一代')
    await screenshot(page, 'responses')
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
    expect(rows[0]!.prompt).toBe('真人化是否能改善日本漫畫的全球可及性？')
    const meta = JSON.parse(readFileSync(target.replace(/\.json$/, '.meta.json'), 'utf8')) as Record<string, unknown>
    expect(meta.params).toBeTruthy()
    const adapterDir = path.join(dataDir, 'exports', 'e2e', 'adapter')
    await tid('export-adapter-path').getByTestId('path-input').fill(adapterDir)
    await tid('export-adapter-button').click()
    await expect.poll(() => existsSync(path.join(adapterDir, 'adapter_config.json')), { timeout: 10_000 }).toBe(true)
    expect(existsSync(path.join(adapterDir, 'adapter_model.safetensors'))).toBe(true)
    await screenshot(page, 'export')
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

  it.runIf(hasTraining)('compares two runs side by side', async () => {
    await nav('dataset')
    await tid('support-ratio-input').fill('0.9')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('18')
    await nav('run')
    await tid('train-start').click()
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 180_000, interval: 500 }).toMatch(/^completed/)
    await nav('history')
    await expect.poll(() => tid('history-row').count()).toBe(2)
    for (const box of await tid('run-history').locator('input[type=checkbox]').all()) await box.check()
    await tid('history-compare').click()
    await tid('history-compare-view').waitFor()
    await tid('history-compare-view').getByTestId('diff-view').waitFor()
    await screenshot(page, 'history-compare')
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
