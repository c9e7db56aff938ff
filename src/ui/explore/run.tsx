/** Puts explore on the terminal: alternate screen, Ink render, and back when it ends. */
import { render } from 'ink';
import { App } from './App.js';
import type { ExploreController } from './controller.js';

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[H';
const ALT_SCREEN_OFF = '\x1b[?1049l';

/** Runs the app until the user quits; the caller closes the controller and runtime afterwards. */
export async function runExploreApp(controller: ExploreController, stdout: NodeJS.WriteStream = process.stdout): Promise<void> {
  stdout.write(ALT_SCREEN_ON);
  const app = render(<App controller={controller} />, { stdout, exitOnCtrlC: false, patchConsole: true, maxFps: 20 });
  const onSignal = () => controller.quit();
  // Raw mode turns Ctrl-C into a key; signals from elsewhere end the session the same way.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    controller.start();
    await app.waitUntilExit();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    app.unmount();
    stdout.write(ALT_SCREEN_OFF);
  }
}
