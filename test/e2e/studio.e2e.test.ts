// The studio end to end in Chromium against the web host with the real engine, on the built-in demo model and sample
// dataset that a fresh session opens by itself: see the demo notice, open a real model (stories260K from ../shared,
// when present) and come back, change support_ratio and see the pairs change, generate, train and watch the curves,
// find an answer whose stance DPO changed and its highlighted diff, export and read the JSON back, find the run in
// the history, inspect the run's pairs and their tokens, cancel a support_ratio 0.9 run and resume it from the history,
// compare the two (answers, then pairs and tokens side by side), run a support_ratio sweep and follow it to a run's
// pairs, export the run elsewhere and import an adapter back, survive an engine crash. Screenshots of each main view
// land in test-results/screenshots.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serveStudio, type RunningWebHost } from '../../src-main/webhost/app'
import { classifyStance, type StanceRow } from '../../scripts/demo-model/stance'
import { repoRoot, sharedPath } from '../helpers/sharedPath'
import type { AnswerTokensRow, PairInsightRow, PairTokensRow, SweepFile } from '../../src-shared/insights/insightTypes'
import { tokenLabel } from '../../src-renderer/src/lib/tokenHeat'
import { readJsonl } from '../helpers/insightFiles'
import { seriousViolations } from './axe'
import { launchChromium, screenshot } from './browser'

const DEMO_MODEL = realpathSync(path.join(repoRoot, 'resources/demo-model'))
const SAMPLE = path.join(repoRoot, 'resources/sample-dataset/zh')
const SAMPLE_ROWS = JSON.parse(readFileSync(path.join(SAMPLE, 'labelled_data.json'), 'utf8')) as Array<
  StanceRow & { prompt: string }
>
/** A real (non-demo) model for the switch back to the notebook's values; optional. */
const REAL_MODEL = sharedPath('models/stories260K')
const hasRealModel = existsSync(path.join(REAL_MODEL, 'config.json'))
/** The app shows folders with symlinks resolved (its path rules work on real paths); ../shared may be a link. */
const REAL_MODEL_SHOWN = hasRealModel ? realpathSync(REAL_MODEL) : REAL_MODEL
const hasTraining = existsSync(path.join(repoRoot, 'src-main/services/training/notebookRun.ts'))

let host: RunningWebHost
let hostRoots: string[] = []
let context: BrowserContext
let page: Page
let dataDir: string

const tid = (id: string) => page.getByTestId(id)
/** How the app writes a metric (lib/format.ts metric). */
const shown = (v: number | null | undefined) =>
  v == null ? '—' : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4)
/** Closes the notices (toasts) so they do not cover a screenshot. */
async function dismissNotices(): Promise<void> {
  for (const b of await page.getByRole('button', { name: 'Dismiss' }).all()) await b.click().catch(() => undefined)
}
/** The run directories under the app's runs folder, oldest first. */
const runDirs = () =>
  readdirSync(path.join(dataDir, 'runs'))
    .sort()
    .map((r) => path.join(dataDir, 'runs', r))
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
  if (!existsSync(path.join(repoRoot, 'out/renderer/index.html')))
    throw new Error('build the renderer first: npx electron-vite build (npm run test:e2e does)')
  dataDir = mkdtempSync(path.join(tmpdir(), 'dpo-e2e-data-'))
  hostRoots = existsSync(sharedPath()) ? [sharedPath()] : []
  host = await serveStudio({ dataDir, roots: hostRoots, port: 0 })
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
    // A favicon, served like the rest of the page.
    expect(await page.locator('link[rel="icon"]').getAttribute('href')).toBe('./favicon.svg')
    const icon = await page.evaluate(async () => {
      const r = await fetch('./favicon.svg')
      return { status: r.status, type: r.headers.get('content-type'), text: await r.text() }
    })
    expect(icon).toMatchObject({ status: 200, type: 'image/svg+xml' })
    expect(icon.text).toContain('<svg')
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
    // Without a usable GPU: a sentence, not the CUDA runtime's error; its words on demand. What to do next, and that
    // loading here is optional.
    await expect
      .poll(async () => (await tid('cpu-reason').textContent()) ?? '')
      .toMatch(
        /^(No NVIDIA GPU found, computing on the CPU\.|This engine build has no CUDA backend, so it computes on the CPU\.)$/,
      )
    // innerText: the closed Details (the runtime's own words) is not shown text.
    expect(await tid('engine-card').innerText()).not.toMatch(/cudaGetDeviceCount/)
    expect(await tid('next-step').textContent()).toContain('Start training')
    expect(await tid('load-optional').textContent()).toContain('a training run loads the model by itself')
  })

  it.runIf(hasRealModel)(
    'a real model hides the notice and brings the notebook values; one click goes back to the demo',
    async () => {
      await openPath('model-path', REAL_MODEL)
      await expect.poll(async () => (await tid('model-summary').textContent()) ?? '').toContain(REAL_MODEL_SHOWN)
      await expect.poll(() => tid('demo-notice').count()).toBe(0)
      expect(await tid('demo-badge-models').count()).toBe(0)
      await expect.poll(async () => (await tid('nav-params').textContent()) ?? '').toContain('Notebook defaults')
      await tid('use-demo-model').click()
      await tid('demo-notice').waitFor()
      await expect.poll(async () => (await tid('nav-params').textContent()) ?? '').toContain('Demo model preset')
    },
  )

  it('loads the demo model on the engine', async () => {
    await tid('model-load').click()
    await tid('model-loaded').waitFor({ timeout: 60_000 })
    await screenshot(page, 'models')
  })

  it('a refused open keeps the model, dataset and parameters, and says exactly how to allow the folder', async () => {
    const outside = mkdtempSync(path.join(tmpdir(), 'dpo-e2e-outside-'))
    const allow = `dpo-studio serve --allow ${outside}`
    await openPath('model-path', outside)
    await expect.poll(async () => (await tid('model-error').textContent()) ?? '').toContain(allow)
    expect(await tid('model-summary').textContent()).toContain(DEMO_MODEL)
    await tid('model-loaded').waitFor()
    expect(await tid('nav-params').textContent()).toContain('Demo model preset')
    // Browsing for a model folder: a folder full of model files lists them (it is not "Empty folder").
    await tid('model-path').getByTestId('path-input').fill(DEMO_MODEL)
    await tid('model-path').getByTestId('path-browse').click()
    await tid('fs-entry-config.json').waitFor()
    expect(await tid('files-empty').count()).toBe(0)
    expect(await tid('files-hint').textContent()).toContain('No subfolders here.')
    expect(await tid('files-chosen').textContent()).toBe(DEMO_MODEL)
    await page.keyboard.press('Escape')
    await expect.poll(() => tid('files-browser').count()).toBe(0)
    // Focus goes back to the Browse button that opened it.
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('path-browse')
    await nav('dataset')
    await openPath('dataset-path', path.join(outside, 'labelled_data.json'))
    await expect.poll(async () => (await tid('dataset-error').textContent()) ?? '').toContain(allow)
    await tid('sample-badge').waitFor()
    expect(await tid('pairs-total').textContent()).toBe('60')
    // The folder dialog says where it may go and how to allow more.
    await tid('dataset-path').getByTestId('path-browse').click()
    expect(await tid('files-roots-note').textContent()).toContain('dpo-studio serve --allow')
    await page.keyboard.press('Escape')
    await expect.poll(() => tid('files-browser').count()).toBe(0)
    await nav('models')
  })

  it('has the sample dataset open; support_ratio changes the pairs live', async () => {
    await nav('dataset')
    await tid('dataset-table').waitFor()
    await tid('sample-badge').waitFor()
    await expect.poll(() => tid('pairs-total').textContent()).toBe('60')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('6')
    // A broken file: the error names the row and the field.
    const bad = path.join(dataDir, 'bad.json')
    writeFileSync(
      bad,
      JSON.stringify([
        { id: 1, prompt: 'p', support: 's', oppose: 'o' },
        { id: 2, prompt: 'p2', support: 's2' },
      ]),
    )
    await openPath('dataset-path', bad)
    await tid('dataset-error').waitFor()
    expect(await tid('dataset-error').textContent()).toMatch(/row 2.*field.*oppose/s)
    // ...and the sample stays open meanwhile.
    expect(await tid('pairs-total').textContent()).toBe('60')
    // A TRL file has no test prompts beside it: none, not the sample's; the user can pick a file, then clear it.
    const trl = path.join(dataDir, 'trl.jsonl')
    writeFileSync(
      trl,
      SAMPLE_ROWS.slice(0, 4)
        .map((r) => JSON.stringify({ prompt: r.prompt, chosen: r.support, rejected: r.oppose }))
        .join('\n') + '\n',
    )
    await openPath('dataset-path', trl)
    await expect.poll(() => tid('pairs-total').textContent()).toBe('4')
    expect(await tid('test-prompts-count').textContent()).toBe('0')
    expect(await tid('test-prompts-source').textContent()).toContain('None beside this dataset')
    const promptsFile = path.join(dataDir, 'my_prompts.json')
    writeFileSync(
      promptsFile,
      JSON.stringify([
        { id: 1, prompt: '公園應該禁止吸菸嗎？' },
        { id: 2, prompt: '學校應該取消考試嗎？' },
      ]),
    )
    await openPath('prompts-path', promptsFile)
    await expect.poll(() => tid('test-prompts-count').textContent()).toBe('2')
    expect(await tid('test-prompts').textContent()).toContain('公園應該禁止吸菸嗎？')
    await tid('prompts-clear').click()
    await expect.poll(() => tid('test-prompts-count').textContent()).toBe('0')
    // Web mode's folder browser: only the host's roots (the bundled resources among them); choosing the sample
    // folder opens it again.
    await tid('dataset-path').getByTestId('path-input').fill(SAMPLE)
    await tid('dataset-path').getByTestId('path-browse').click()
    await tid('files-browser').waitFor()
    await tid('fs-entry-labelled_data.json').waitFor()
    expect(await tid('files-browser').textContent()).toContain('DPO_STUDIO_ROOTS')
    expect(await tid('files-browser').getAttribute('aria-modal')).toBe('true')
    // Keyboard only: focus is in the list; arrows move, Space selects, Tab stays inside, Enter chooses the file.
    const focused = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? '')
    await expect.poll(focused).toBe('fs-entry-labelled_data.json')
    await page.keyboard.press('ArrowDown')
    expect(await focused()).toBe('fs-entry-test_prompt.json')
    await page.keyboard.press('ArrowUp')
    await page.keyboard.press(' ')
    expect(await tid('files-chosen').textContent()).toBe(path.join(SAMPLE, 'labelled_data.json'))
    for (let i = 0; i < 14; i++) {
      await page.keyboard.press('Tab')
      expect(await page.evaluate(() => !!document.activeElement?.closest('[data-testid="files-browser"]'))).toBe(true)
    }
    await tid('fs-entry-labelled_data.json').focus()
    await page.keyboard.press('Enter')
    await expect.poll(() => tid('files-browser').count()).toBe(0)
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
    const num = (key: string) => tid(`param-${key}`).getByTestId('number-input')
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
  })

  it('number fields keep what is typed; an empty or non-numeric one is an error that blocks Start and links to the field', async () => {
    const num = (key: string) => tid(`param-${key}`).getByTestId('number-input')
    const stored = () =>
      page.evaluate(() => JSON.parse(localStorage.getItem('dpo-studio.params') ?? '{}') as Record<string, unknown>)
    /** Types key by key, as a person does, then leaves the field with Tab. */
    async function typeInto(key: string, text: string): Promise<void> {
      await num(key).fill('')
      await num(key).pressSequentially(text)
      await page.keyboard.press('Tab')
    }
    for (const [key, text, value] of [
      ['beta', '.05', 0.05],
      ['learningRate', '1e-10', 1e-10],
      ['learningRate', '.0002', 0.0002],
    ] as const) {
      await typeInto(key, text)
      expect(await num(key).inputValue()).toBe(text)
      expect((await stored())[key]).toBe(value)
      expect(await tid(`param-${key}`).getByTestId('field-error').count()).toBe(0)
    }
    // Emptied: an error beside the field, never the default; Start stays disabled and its message links to the field.
    await typeInto('epochs', '')
    await expect
      .poll(async () => (await tid('param-epochs').getByTestId('field-error').textContent()) ?? '')
      .toBe('Empty: enter a number (default 1)')
    await typeInto('beta', 'abc')
    await expect
      .poll(async () => (await tid('param-beta').getByTestId('field-error').textContent()) ?? '')
      .toBe('“abc” is not a number')
    expect(await tid('nav-params').textContent()).toContain('Has errors')
    await nav('run')
    expect(await tid('train-start').isDisabled()).toBe(true)
    expect(await tid('run-blockers').textContent()).toContain(
      'Fix the parameter errors: Epochs (num_epoch), Beta (beta).',
    )
    await tid('fix-epochs').click()
    await tid('params-view').waitFor()
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('p-epochs')
    await page.keyboard.type('4')
    await typeInto('beta', '0.1')
    await typeInto('learningRate', '0.002')
    await expect.poll(async () => tid('params-invalid').count()).toBe(0)
    expect(await tid('preset-demo').getAttribute('class')).toContain('on')
    // Each view keeps its own scroll position: the next view opens at its top, and coming back finds the place.
    await page.evaluate(() => document.querySelector('.content')?.scrollTo(0, 600))
    await nav('dataset')
    expect(await page.evaluate(() => document.querySelector('.content')!.scrollTop)).toBe(0)
    await nav('params')
    await expect.poll(() => page.evaluate(() => document.querySelector('.content')!.scrollTop)).toBe(600)
    await page.evaluate(() => document.querySelector('.content')?.scrollTo(0, 0))
    await screenshot(page, 'params')
  })

  it('streams the original answers before training', async () => {
    await nav('responses')
    expect(await tid('generate-optional').textContent()).toContain(
      'a training run answers the test prompts before and after training by itself',
    )
    await tid('generate-original').click()
    await expect
      .poll(
        async () =>
          (
            (await tid('resp-original')
              .locator('.answer')
              .textContent()
              .catch(() => '')) ?? ''
          ).length,
        { timeout: 60_000 },
      )
      .toBeGreaterThan(5)
    await expect.poll(() => tid('streaming-badge').count(), { timeout: 60_000 }).toBe(0)
    await expect.poll(() => tid('question-9').locator('.d.has').count()).toBe(1)
    // With the sample dataset open, each answer says which side it takes.
    await expect
      .poll(
        async () =>
          (await tid('resp-original-stance')
            .textContent()
            .catch(() => '')) ?? '',
      )
      .toMatch(/^(support|oppose)$/)
    await screenshot(page, 'responses-original')
  })

  it.runIf(hasTraining)('trains with live curves, then shows trained answers and the diff', async () => {
    await nav('run')
    // From the keyboard: Enter on Start; the button becomes Cancel and keeps the focus, with a ring one can see.
    await tid('train-start').focus()
    await page.keyboard.press('Enter')
    await expect
      .poll(() => page.evaluate(() => document.activeElement?.getAttribute('data-testid')), { timeout: 10_000 })
      .toBe('train-cancel')
    const ring = await tid('train-cancel').evaluate((el) => ({
      visible: el.matches(':focus-visible'),
      style: getComputedStyle(el).outlineStyle,
      width: getComputedStyle(el).outlineWidth,
      color: getComputedStyle(el).outlineColor,
    }))
    expect(ring).toEqual({ visible: true, style: 'solid', width: '2px', color: 'rgb(52, 81, 209)' })
    // Curves update at each logging step: the loss chart's step counter moves while the run goes on.
    await expect.poll(async () => (await tid('run-loss').textContent()) ?? '—', { timeout: 120_000 }).not.toBe('—')
    // While it trains, the sidebar does not claim the answers are being generated.
    if ((await tid('run-status').textContent())?.includes('running'))
      expect(await tid('nav-responses').textContent()).not.toContain('Generating')
    expect(await tid('loss-chart-mark').textContent()).toBe('· dotted line: ln 2 = 0.6931')
    await expect
      .poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 180_000, interval: 500 })
      .toContain('completed')
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
    const stances = answers.map((a) => ({
      original: classifyStance(a.original, SAMPLE_ROWS),
      trained: classifyStance(a.trained, SAMPLE_ROWS),
    }))
    const opposeAfter = stances.filter((s) => s.trained === 'oppose').length
    const opposeBefore = stances.filter((s) => s.original === 'oppose').length
    // support_ratio 0.1: most pairs prefer "oppose", and the trained answers lean that way.
    expect(opposeAfter, JSON.stringify(answers)).toBeGreaterThanOrEqual(7)
    expect(opposeAfter).toBeGreaterThanOrEqual(opposeBefore)
    const changed = stances.findIndex((s) => s.original === 'support' && s.trained === 'oppose')
    const index = changed >= 0 ? changed : stances.findIndex((s) => s.original !== s.trained)
    expect(index, `no answer changed stance: ${JSON.stringify(answers)}`).toBeGreaterThanOrEqual(0)

    await tid(`question-${index}`).click()
    await expect
      .poll(async () => (await tid('resp-trained').locator('.answer').textContent()) ?? '')
      .toBe(answers[index]!.trained)
    const diff = tid('diff-view')
    await expect.poll(() => diff.locator('.removed').count()).toBeGreaterThan(0)
    expect(await diff.locator('.added').count()).toBeGreaterThan(0)
    // Chinese answers are counted in characters, not "words".
    expect(await tid('diff-removed').textContent()).toMatch(/^−[1-9]\d* chars$/)
    expect(await tid('diff-added').textContent()).toMatch(/^\+[1-9]\d* chars$/)
    expect(await tid('resp-trained-length').textContent()).toMatch(/^\d+ chars$/)
    // Copying the diff marks what was removed and added, instead of running the two together.
    const copied = await diff.getByTestId('diff-text').evaluate((el) => {
      const range = document.createRange()
      range.selectNodeContents(el)
      getSelection()!.removeAllRanges()
      getSelection()!.addRange(range)
      const data = new DataTransfer()
      el.dispatchEvent(new ClipboardEvent('copy', { clipboardData: data, bubbles: true, cancelable: true }))
      const expected = [...el.children]
        .map((c) =>
          c.classList.contains('removed')
            ? `[-${c.textContent}-]`
            : c.classList.contains('added')
              ? `{+${c.textContent}+}`
              : c.textContent,
        )
        .join('')
      return { text: data.getData('text/plain'), expected }
    })
    expect(copied.text).toBe(copied.expected)
    expect(copied.text).toMatch(/\[-.+?-\]/)
    expect(copied.text).toMatch(/\{\+.+?\+\}/)
    // The highlighted parts really are coloured (removed red, added green).
    const bg = (sel: string) =>
      diff
        .locator(sel)
        .first()
        .evaluate((el) => getComputedStyle(el).backgroundColor)
    expect(await bg('.removed')).toBe('rgb(253, 228, 225)')
    expect(await bg('.added')).toBe('rgb(217, 243, 232)')
    expect(await tid('resp-original-stance').textContent()).toBe(stances[index]!.original)
    expect(await tid('resp-trained-stance').textContent()).toBe(stances[index]!.trained)
    expect(await tid('stance-moved').textContent()).toContain(
      `from ${stances[index]!.original} to ${stances[index]!.trained}`,
    )
    await screenshot(page, 'demo-stance-change')
  })

  it.runIf(hasTraining)('exports the comparison JSON in the notebook shape and reads it back', async () => {
    await nav('export')
    await tid('export-button').waitFor()
    await expect.poll(() => tid('export-run').inputValue()).not.toBe('')
    const target = path.join(dataDir, 'exports', 'e2e', 'comparison.json')
    const field = tid('export-comparison-path')
    await field.getByTestId('path-input').fill(target)
    // innerText, as a reader sees it: the template's line breaks around the text are layout, not content.
    expect(await tid('export-comparison-target').innerText()).toBe(`Writes ${target}`)
    await tid('export-button').click()
    await tid('export-results').waitFor()
    const rows = JSON.parse(readFileSync(target, 'utf8')) as Array<Record<string, unknown>>
    // In the browser the file is also a download, byte for byte.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      tid('export-download-comparison.json').click(),
    ])
    expect(download.suggestedFilename()).toBe('comparison.json')
    expect(readFileSync((await download.path())!, 'utf8')).toBe(readFileSync(target, 'utf8'))
    expect(rows).toHaveLength(10)
    expect(Object.keys(rows[0]!).sort()).toEqual([
      'id',
      'prompt',
      'response_from_original_model',
      'response_from_trained_model',
    ])
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

  it.runIf(hasTraining)(
    'asks before replacing an earlier export, and never writes over a file that is not one',
    async () => {
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
    },
  )

  it.runIf(hasTraining)('lists the run in the history and reopens it', async () => {
    await nav('history')
    await tid('run-history').waitFor()
    await expect.poll(() => tid('history-row').count()).toBe(1)
    await screenshot(page, 'history')
    // Each run says what tells it apart: model, dataset, support_ratio, epochs, beta, loss.
    const row = tid('history-row').first()
    expect(await row.getByTestId('history-ratio').textContent()).toBe('0.1')
    expect(await row.getByTestId('history-epochs').textContent()).toBe('4')
    expect(await row.getByTestId('history-beta').textContent()).toBe('0.1')
    expect(await row.getByTestId('history-loss').textContent()).toBe('sigmoid')
    expect(await row.textContent()).toContain('demo-model')
    await tid('run-history').getByRole('button', { name: 'Open' }).first().click()
    await tid('run-view').waitFor()
    await expect.poll(async () => (await tid('run-status').textContent()) ?? '').toContain('past run')
    // The opened run shows its parameters.
    expect(await tid('run-param-supportRatio').locator('td').textContent()).toBe('0.1')
    expect(await tid('run-param-model').locator('td').textContent()).toContain('demo-model')
  })

  it.runIf(hasTraining)(
    'inspects the run: pairs.jsonl in a sortable, filterable table, and a pair token by token',
    async () => {
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
      const deltas = await heat
        .getByTestId('heat-token')
        .evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.delta)))
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
      expect(await tid('answer-heat-a-trained').getByTestId('heat-token').allTextContents()).toEqual(
        answers[1]!.trained.text.map(tokenLabel),
      )
      expect(answers[1]!.trained.answer).toBe(
        JSON.parse(readFileSync(path.join(dir!, 'responses_trained.json'), 'utf8'))[1].response,
      )
      await dismissNotices()
      await screenshot(page, 'pairs-answers')
      await tid('pairs-tab-pairs').click()
    },
  )

  it.runIf(hasTraining)('cancels a second run during training and resumes it from the history', async () => {
    await nav('dataset')
    await tid('support-ratio-input').fill('0.9')
    await expect.poll(() => tid('pairs-support').textContent()).toBe('54')
    await nav('run')
    await tid('train-start').click()
    // Cancel once a training step has been logged; the run keeps a checkpoint (docs/resume.md).
    await expect
      .poll(async () => (await tid('run-loss').textContent()) ?? '—', { timeout: 120_000, interval: 100 })
      .not.toBe('—')
    await tid('train-cancel').click()
    await expect
      .poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 60_000, interval: 250 })
      .toContain('cancelled')
    await tid('train-resume').waitFor()
    await nav('history')
    await expect.poll(() => tid('history-row').count()).toBe(2)
    const runsDir = path.join(dataDir, 'runs')
    const [oldest, newest] = readdirSync(runsDir).sort() as [string, string]
    expect(existsSync(path.join(runsDir, newest, 'checkpoint.safetensors'))).toBe(true)
    await screenshot(page, 'history-resumable')
    // Comparing the cancelled run: its column says it has no trained answers, never shows its untrained ones.
    await tid(`history-pick-${oldest}`).check()
    await tid(`history-pick-${newest}`).check()
    await tid('history-compare').click()
    const cmp = tid('history-compare-view')
    await cmp.waitFor()
    expect(await cmp.getByTestId('compare-missing').textContent()).toContain(
      `Run ${newest} was cancelled before its trained answers`,
    )
    expect(await cmp.getByTestId('resp-trained').locator('h2').textContent()).toContain('cancelled, no trained answers')
    expect(await cmp.getByTestId('resp-trained-empty').textContent()).toContain('no trained answers to compare')
    expect(await cmp.getByTestId('resp-original').locator('h2').textContent()).toContain('trained answers')
    expect(await cmp.getByTestId('diff-view').count()).toBe(0)
    // Both runs' parameters, the difference marked.
    expect(await cmp.getByTestId('run-param-supportRatio').locator('td').allTextContents()).toEqual(['0.1', '0.9'])
    expect(await cmp.getByTestId('run-param-supportRatio').getAttribute('class')).toContain('differs')
    // Unticking one closes the comparison: what is ticked and what is compared stay the same.
    await tid(`history-pick-${oldest}`).uncheck()
    await expect.poll(() => tid('history-compare-view').count()).toBe(0)
    await tid(`history-pick-${newest}`).uncheck()
    // Sort and filter by the parameters.
    await tid('history-sort-supportRatio').click()
    expect(await tid('history-row').first().getAttribute('data-run')).toBe(oldest)
    await tid('history-sort-supportRatio').click()
    expect(await tid('history-row').first().getAttribute('data-run')).toBe(newest)
    await tid('history-filter-status').selectOption('cancelled')
    await expect.poll(() => tid('history-row').count()).toBe(1)
    expect(await tid('history-count').textContent()).toBe('1 of 2 runs')
    await tid('history-filter-status').selectOption('')
    await tid('history-filter-ratio').selectOption('0.1')
    await expect.poll(async () => (await tid('history-row').first().getAttribute('data-run')) ?? '').toBe(oldest)
    expect(await tid('history-row').count()).toBe(1)
    await tid('history-filter-ratio').selectOption('')
    await tid('history-sort-startedAt').click()
    // A small window: the table scrolls inside its card, the Open buttons stay in view, the page never scrolls sideways.
    await page.setViewportSize({ width: 1024, height: 640 })
    for (const b of await tid('run-history').getByRole('button', { name: 'Open' }).all()) {
      const box = (await b.boundingBox())!
      expect(box.x + box.width).toBeLessThanOrEqual(1024)
    }
    expect(
      await page.evaluate(() => {
        const c = document.querySelector('.content')!
        return c.scrollWidth - c.clientWidth
      }),
    ).toBeLessThanOrEqual(0)
    await screenshot(page, 'history-1024')
    await page.setViewportSize({ width: 1440, height: 900 })
    await tid(`history-resume-${newest}`).click()
    await tid('run-view').waitFor()
    await expect
      .poll(async () => (await tid('run-status').textContent()) ?? '', { timeout: 180_000, interval: 500 })
      .toMatch(/^completed/)
    const status = JSON.parse(readFileSync(path.join(runsDir, newest, 'run_status.json'), 'utf8')) as Record<
      string,
      unknown
    >
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
    expect(await tid('history-compare-view').getByTestId('compare-missing').count()).toBe(0)
    await screenshot(page, 'history-compare')
    // The comparison downloads as one file: both runs' parameters and each question's two trained answers.
    const [download] = await Promise.all([page.waitForEvent('download'), tid('compare-download').click()])
    const file = JSON.parse(readFileSync((await download.path())!, 'utf8')) as {
      runs: Array<{ run_id: string; params: { supportRatio: number } }>
      rows: Array<{ response_from_run_a: string; response_from_run_b: string }>
    }
    expect(file.runs.map((r) => r.params.supportRatio)).toEqual([0.1, 0.9])
    expect(file.rows).toHaveLength(10)
    expect(file.rows.every((r) => r.response_from_run_a.length > 0 && r.response_from_run_b.length > 0)).toBe(true)
    // support_ratio 0.9 pulled the same model the other way: most answers of the newer run take the support side.
    const runsDir = path.join(dataDir, 'runs')
    const newest = readdirSync(runsDir).sort().at(-1)!
    const cmp = JSON.parse(readFileSync(path.join(runsDir, newest, 'comparison.json'), 'utf8')) as Array<{
      response_from_trained_model: string
    }>
    const support = cmp.filter((r) => classifyStance(r.response_from_trained_model, SAMPLE_ROWS) === 'support').length
    expect(support).toBeGreaterThanOrEqual(7)
  })

  it.runIf(hasTraining)('after a reload, Training and Responses show the latest run', async () => {
    const newest = runDirs().at(-1)!
    const answers = JSON.parse(readFileSync(path.join(newest, 'responses_trained.json'), 'utf8')) as Array<{
      response: string
    }>
    await page.reload()
    await tid('models-view').waitFor()
    await expect
      .poll(async () => (await tid('nav-run').textContent()) ?? '', { timeout: 15_000 })
      .toContain('Past run · completed')
    await nav('run')
    expect(await tid('run-status').textContent()).toBe('past run · completed')
    expect(await tid('run-view').textContent()).toContain(path.basename(newest))
    await nav('responses')
    await expect
      .poll(async () => (await tid('resp-trained').locator('.answer').textContent()) ?? '')
      .toBe(answers[0]!.response)
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
    expect(await tid('heat-b-chosen').getByTestId('heat-token').count()).toBe(
      await tid('heat-a-chosen').getByTestId('heat-token').count(),
    )
    // Sorting by the compared run's margin puts its largest first.
    await tid('pairs-sort-marginB').click()
    const bestB = [...olderPairs].sort((a, b) => b.margin! - a.margin!)[0]!
    await expect
      .poll(() => tid('pairs-table').locator('tbody tr').first().getAttribute('data-testid'))
      .toBe(`pair-row-${bestB.index}`)
    await tid('pair-detail').scrollIntoViewIfNeeded()
    await dismissNotices()
    await screenshot(page, 'pairs-compare')
    await tid('pairs-compare').selectOption('')
  })

  it.runIf(hasTraining)(
    "runs a support_ratio sweep, charts the stance against the ratio, and opens a run's pairs",
    { timeout: 400_000 },
    async () => {
      await nav('sweep')
      await tid('sweep-ratios').fill('0, 1')
      await tid('sweep-start').click()
      await tid('sweep-progress').waitFor({ timeout: 30_000 })
      await expect
        .poll(
          async () =>
            (await tid('sweep-status')
              .textContent()
              .catch(() => '')) ?? '',
          { timeout: 360_000, interval: 1000 },
        )
        .toBe('completed')
      const sweepsDir = path.join(dataDir, 'sweeps')
      const [id] = readdirSync(sweepsDir)
      const sweep = JSON.parse(readFileSync(path.join(sweepsDir, id!, 'sweep.json'), 'utf8')) as SweepFile
      expect(sweep.runs.map((r) => [r.support_ratio, r.status])).toEqual([
        [0, 'completed'],
        [1, 'completed'],
      ])
      for (const [i, r] of sweep.runs.entries()) {
        expect(await tid(`sweep-row-${i}`).getByTestId('sweep-margin').textContent()).toBe(shown(r.mean_margin_support))
        expect(await tid(`sweep-row-${i}`).getByTestId('sweep-stance').textContent()).toBe(
          `${r.stance!.support} / ${r.stance!.oppose}`,
        )
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
    },
  )

  it.runIf(hasTraining)(
    'exports the run elsewhere (merged model, GGUF + Modelfile, cluster project), never into a folder not its own, and imports an adapter back',
    async () => {
      await nav('export')
      await tid('export-elsewhere').waitFor()
      const runId = await tid('export-run').inputValue()
      const root = path.join(dataDir, 'exports', runId)
      // GGUF: F16 only, to keep the test short; the defaults are F16, Q8_0 and Q4_0.
      await tid('export-gguf-Q8_0').uncheck()
      await tid('export-gguf-Q4_0').uncheck()
      for (const kind of ['merged', 'gguf', 'project']) {
        await tid(`export-${kind}-button`).click()
        await tid(`export-${kind}-done`).waitFor({ timeout: 60_000 })
      }
      expect(existsSync(path.join(root, 'merged-model', 'model.safetensors'))).toBe(true)
      expect(readdirSync(path.join(root, 'gguf')).filter((f) => f.endsWith('.gguf')).length).toBe(2) // F16 + the LoRA
      expect(readFileSync(path.join(root, 'gguf', 'Modelfile'), 'utf8')).toMatch(/^FROM \.\/.+-F16\.gguf$/m)
      expect(existsSync(path.join(root, 'project', 'train.py'))).toBe(true)
      await screenshot(page, 'export-elsewhere')

      // A folder of the user's: refused, left as it was. The earlier export: replaced after asking.
      const mine = path.join(dataDir, 'exports', 'my-notes')
      mkdirSync(mine, { recursive: true })
      writeFileSync(path.join(mine, 'notes.txt'), 'mine')
      await tid('export-merged-path').getByTestId('path-input').fill(mine)
      await tid('export-merged-button').click()
      await expect
        .poll(() => tid('export-elsewhere-error').textContent())
        .toContain('not an earlier merged-model export')
      expect(readdirSync(mine)).toEqual(['notes.txt'])
      await tid('export-merged-path').getByTestId('path-input').fill(path.join(root, 'merged-model'))
      await tid('export-merged-button').click()
      await tid('export-merged-overwrite').waitFor()
      await tid('export-merged-overwrite-yes').click()
      await tid('export-merged-done').waitFor()

      // The adapter the project would bring back (here: the run's own) becomes a new run with the comparison.
      await tid('import-adapter-path')
        .getByTestId('path-input')
        .fill(path.join(dataDir, 'runs', runId, 'adapter'))
      await tid('import-adapter-button').click()
      await tid('import-adapter-done').waitFor({ timeout: 60_000 })
      expect(
        JSON.parse(readFileSync(path.join(dataDir, 'runs', `${runId}-imported`, 'comparison.json'), 'utf8')),
      ).toHaveLength(10)
      await nav('history')
      await expect.poll(() => tid('history-row').count()).toBe(3)
    },
  )

  it('has no serious or critical axe-core violation in any view', async () => {
    const found: Record<string, unknown> = {}
    const check = async (where: string) => {
      const v = await seriousViolations(page)
      if (v.length) found[where] = v
    }
    await dismissNotices()
    for (const view of ['models', 'dataset', 'params', 'run', 'responses', 'pairs', 'sweep', 'export', 'history']) {
      await nav(view)
      await page.waitForTimeout(300)
      await check(view)
    }
    // The History comparison, a parameter error, and the folder browser dialog.
    for (const box of (await tid('run-history').locator('input[type=checkbox]').all()).slice(0, 2)) await box.check()
    await tid('history-compare').click()
    await tid('history-compare-view').waitFor()
    await check('history-compare')
    await nav('params')
    await tid('param-beta').getByTestId('number-input').fill('x')
    await page.keyboard.press('Tab')
    await check('params-error')
    await tid('param-beta').getByTestId('number-input').fill('0.1')
    await page.keyboard.press('Tab')
    await nav('dataset')
    await tid('dataset-path').getByTestId('path-browse').click()
    await tid('files-browser').waitFor()
    await check('files-browser')
    await page.keyboard.press('Escape')
    expect(found).toEqual({})
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

  it('says page-wide when the server is gone, fails actions at once, and reconnects by itself when it is back', async () => {
    const port = host.port
    const token = new URL(host.url).searchParams.get('token')!
    await nav('history')
    // Wait for the list: counted before it renders, the number would be 0.
    await expect.poll(() => tid('history-row').count()).toBeGreaterThanOrEqual(2)
    const runsBefore = await tid('history-row').count()
    await host.stop()
    await tid('disconnected-banner').waitFor({ timeout: 10_000 })
    expect(await tid('disconnected-banner').textContent()).toContain('dpo-studio serve')
    expect(await tid('engine-chip').textContent()).toContain('Server disconnected')
    // An action answers at once instead of spinning.
    const t0 = Date.now()
    await tid('history-view').getByRole('button', { name: 'Refresh' }).click()
    await expect
      .poll(async () => (await tid('run-history').textContent()) ?? '', { timeout: 2_000 })
      .toContain('not connected to the DPO Studio server')
    expect(Date.now() - t0).toBeLessThan(2_000)
    await screenshot(page, 'disconnected')
    // The same server (port and token) comes back: the banner goes and the page carries on.
    host = await serveStudio({ dataDir, roots: hostRoots, port, token })
    await expect.poll(() => tid('disconnected-banner').count(), { timeout: 15_000 }).toBe(0)
    await expect
      .poll(async () => (await tid('engine-chip').textContent()) ?? '', { timeout: 30_000 })
      .toMatch(/CPU ·|GPU|·/)
    await tid('history-view').getByRole('button', { name: 'Refresh' }).click()
    await expect.poll(() => tid('history-row').count()).toBe(runsBefore)
  })
})
