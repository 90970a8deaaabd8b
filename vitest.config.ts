// vitest: unit suites (services, tokenizer, data files, app stores/components) and engine suites (the real addon on
// CPU, tiny models). The Vue plugin compiles single-file components for the app suites, which opt into happy-dom
// per file; everything else stays in node. The E2E suite has its own config (vitest.e2e.config.ts).
import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vitest/config'
import { sharedAlias } from './viteAlias'

export default defineConfig({
  resolve: { alias: sharedAlias },
  plugins: [vue()],
  test: {
    // One temp folder per run, removed at the end (test/helpers/testTempRoot.ts).
    globalSetup: ['test/helpers/testTempRoot.ts'],
    // test/faults: real CLI and web host processes under faults (full disk, signals, hostile clients, bad paths); run
    // once, not again on the guarded backend (test:guarded reruns test/engine only).
    include: ['test/unit/**/*.test.ts', 'test/engine/**/*.test.ts', 'test/faults/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Engine suites share 2 cores; running files one at a time keeps timings sane.
    fileParallelism: false,
  },
})
