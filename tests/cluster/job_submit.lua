-- TESP's job_submit.lua: apply the resources a TES task asked for to its Slurm job.
--
-- Pulsar's queued_cli manager writes the job script itself and takes #SBATCH options from
-- its own configuration only, so TESP puts one comment line into the script's command:
--   # tesp-slurm: cpus=2 mem=2048 tmp=1024 partition=short time=90 account=lab qos=normal
-- (mem and tmp in MB, time in minutes). Slurm's own checks (partition limits, account and
-- QOS permissions) still apply afterwards, exactly as for the same sbatch options.

local NUMBERS = { cpus = true, mem = true, tmp = true, time = true }

local function apply(job_desc, key, value)
   if NUMBERS[key] then
      local n = tonumber(value)
      if n == nil or n < 1 or n ~= math.floor(n) then
         return "tesp-slurm: " .. key .. " must be a positive integer"
      end
      if key == "cpus" then
         job_desc.cpus_per_task = n
         job_desc.min_cpus = n
      elseif key == "mem" then
         job_desc.pn_min_memory = n
      elseif key == "tmp" then
         job_desc.pn_min_tmp_disk = n
      else
         job_desc.time_limit = n
      end
   elseif key == "partition" then
      job_desc.partition = value
   elseif key == "account" then
      job_desc.account = value
   elseif key == "qos" then
      job_desc.qos = value
   else
      return "tesp-slurm: unknown key " .. key
   end
   return nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   local script = job_desc.script
   if script == nil then
      return slurm.SUCCESS
   end
   local line = string.match(script, "\n# tesp%-slurm: ([^\n]*)")
   if line == nil then
      return slurm.SUCCESS
   end
   for key, value in string.gmatch(line, "([%w_]+)=([%w_.-]+)") do
      local problem = apply(job_desc, key, value)
      if problem ~= nil then
         slurm.log_user(problem)
         return slurm.ERROR
      end
   end
   slurm.log_info("tesp-slurm: job %s: %s", tostring(job_desc.name), line)
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
