// Launches Debian's Chromium (/usr/bin/chromium, or $CHROMIUM_PATH) headless through playwright-core, with a fresh
// profile and nothing that phones home; screenshots go to test-results/screenshots.
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { repoRoot } from '../helpers/sharedPath'

export const SCREENSHOTS = path.join(repoRoot, 'test-results', 'screenshots')

export async function launchChromium(): Promise<{ context: BrowserContext; page: Page }> {
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'dpo-e2e-profile-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--no-default-browser-check',
      '--lang=en-US',
    ],
  })
  const page = context.pages()[0] ?? (await context.newPage())
  return { context, page }
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true })
  const file = path.join(SCREENSHOTS, `${name}.png`)
  await page.screenshot({ path: file, fullPage: false })
  return file
}
