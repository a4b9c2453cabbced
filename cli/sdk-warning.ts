/**
 * Imported first by the `covidct` executable, before any module that loads the AWS SDK.
 *
 * The SDK is pinned (package-lock.json) at a release that runs on Node 20; its warning that later
 * releases will need Node 22 is about versions covidct does not install, and it printed eight lines
 * twice on every `covidct dev` and `npm start` (the CLI and the worker it spawns, which inherits
 * this environment). An operator who sets the variable keeps their choice.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
