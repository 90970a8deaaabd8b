// vitest: unit suites (services, tokenizer, data files) and engine suites (the real addon on CPU, tiny models).
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/engine/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Engine suites share 2 cores; running files one at a time keeps timings sane.
    fileParallelism: false,
  },
})
