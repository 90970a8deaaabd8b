// vitest for the reference suite (`npm run test:reference`): the engine beside the real TRL / PEFT / bitsandbytes /
// transformers / tokenizers stack, in the Python environment of scripts/refstack/setup.sh (docs/reference-parity.md).
import { defineConfig } from 'vitest/config'
import { sharedAlias } from './viteAlias'

export default defineConfig({
  resolve: { alias: sharedAlias },
  test: {
    // One temp folder per run, removed at the end (test/helpers/testTempRoot.ts).
    globalSetup: ['test/helpers/testTempRoot.ts'],
    include: ['test/reference/**/*.ref.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
})
