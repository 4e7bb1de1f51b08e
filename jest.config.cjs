/** Tests run the TypeScript sources directly (swc), against the native addon built in build-cmake/ or build/. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  testTimeout: 120000,
  maxWorkers: 2,
};
