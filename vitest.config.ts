import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The end-to-end tests share one lab fleet: test files run one after another.
    fileParallelism: false,
    reporters: ['default', './test/helpers/plain-summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
