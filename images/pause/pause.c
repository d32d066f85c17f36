/* Minimal pod sandbox "pause" process for director-boot's lab mirror.
 * Holds the pod's namespaces open, reaps orphaned children (it is PID 1
 * of the pod), and exits cleanly on SIGTERM/SIGINT.
 * Build: gcc -Os -static -o pause pause.c */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_chld(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'v') {
    static const char v[] = "pause (director-boot) 3.10\n";
    return write(1, v, sizeof v - 1) < 0;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;)
    pause();
}
