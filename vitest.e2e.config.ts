// vitest for the Playwright E2E suite (test/e2e): the web host with the real engine on a tiny model, driven in
// Debian's Chromium. Run with `npm run test:e2e`, which builds the renderer first.
import { defineConfig } from 'vitest/config'
import { sharedAlias } from './viteAlias'

export default defineConfig({
  resolve: { alias: sharedAlias },
  test: {
    // One temp folder per run, removed at the end (test/helpers/testTempRoot.ts).
    globalSetup: ['test/helpers/testTempRoot.ts'],
    include: ['test/e2e/**/*.e2e.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
})
