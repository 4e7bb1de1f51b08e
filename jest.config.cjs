/** Tests run the TypeScript sources directly (swc), against the native addon built in build-cmake/ or build/. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.[tj]sx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  // hyparquet ships ES modules only; jest runs CommonJS, so those two packages are transformed too.
  transformIgnorePatterns: ['/node_modules/(?!(hyparquet|hyparquet-writer)/)'],
  testTimeout: 120000,
  maxWorkers: 2,
};
