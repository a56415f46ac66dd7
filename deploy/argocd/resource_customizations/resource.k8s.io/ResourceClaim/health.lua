-- Health of a DRA ResourceClaim (resource.k8s.io/v1) for Argo CD. Argo CD ships none.
-- A claim is allocated only when the first Pod that uses it is scheduled, so an unallocated
-- claim is Healthy (waiting for a consumer), not Progressing: otherwise every claim no Pod
-- uses yet would hold its Application Progressing forever. Degraded when a driver reports a
-- device of the allocation not Ready; Progressing while being deleted.
local hs = {}

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

local status = obj.status or {}
if status.devices ~= nil then
  for _, d in ipairs(status.devices) do
    if d.conditions ~= nil then
      for _, c in ipairs(d.conditions) do
        if c.type == "Ready" and c.status == "False" then
          hs.status = "Degraded"
          hs.message = "Device " .. tostring(d.device) .. " of " .. tostring(d.driver)
              .. " is not ready: " .. (c.message or c.reason or "")
          return hs
        end
      end
    end
  end
end

if status.allocation ~= nil then
  local n = 0
  if status.allocation.devices ~= nil and status.allocation.devices.results ~= nil then
    n = #status.allocation.devices.results
  end
  local users = 0
  if status.reservedFor ~= nil then
    users = #status.reservedFor
  end
  hs.status = "Healthy"
  hs.message = "Allocated " .. tostring(n) .. " device(s), reserved for " .. tostring(users)
      .. " consumer(s)"
  return hs
end

hs.status = "Healthy"
hs.message = "Not allocated yet: allocated when the first Pod that uses it is scheduled"
return hs
