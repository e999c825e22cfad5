# Time lme4's lmer on one model: Rscript lme4_bench.R data.csv "formula" REML repeat factor1,factor2,...
# Prints one line of JSON: median seconds, evaluations and the criterion.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
df <- read.csv(args[1])
form <- as.formula(args[2])
reml <- as.logical(args[3])
nrep <- as.integer(args[4])
factors <- if (length(args) >= 5 && nzchar(args[5])) strsplit(args[5], ",")[[1]] else character(0)
for (f in factors) df[[f]] <- factor(df[[f]])
times <- numeric(nrep)
fit <- NULL
for (i in seq_len(nrep)) {
  t0 <- proc.time()[["elapsed"]]
  fit <- suppressMessages(suppressWarnings(lmer(form, data = df, REML = reml)))
  times[i] <- proc.time()[["elapsed"]] - t0
}
crit <- if (reml) unname(getME(fit, "devcomp")$cmp[["REML"]]) else unname(getME(fit, "devcomp")$cmp[["dev"]])
cat(toJSON(list(seconds = median(times), feval = fit@optinfo$feval, criterion = crit), auto_unbox = TRUE, digits = NA), "\n")
